"""PE structure as a fixed-length feature vector: what a byte plot cannot see.

The headers (file header, optional header, data directories, section table) are read with ``struct``
from the first 64 KiB; the byte statistics cover the whole file; the import table and the resource
directory's tree (``malvision.pe``) come from the ranges of the file that hold them; section
entropies, strings and markers (``convert.contentfeatures``, since features version 3) from every
byte. ``FeatureTap`` gathers them all in one pass over a file's chunks. Each version appends to the
vector (``FEATURE_WIDTHS``): 4 the linker and image versions and whether a checksum is set, 5 the
resources, 6 the words of the bytes and UTF-16 strings (``convert.stringwords``). The build date
(TimeDateStamp) and the Rich header are left out on purpose: a detector keyed on them would learn when
and with which compiler our benign files were built, not the malware, and the Rich header's compiler ids
added nothing on source-disjoint folds (docs/detection.md, "Linker and image versions"). Any bytes give
a vector (a header that does not parse leaves its block at zero with ``pe_parsed`` 0); triage decides
separately whether a file is a PE worth judging.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from malvision.convert.contentfeatures import CONTENT_NAMES, WORD_NAMES, ContentTap
from malvision.pe import (
    DIRECTORIES,
    HEAD_BYTES,
    MAX_SECTIONS,
    PEHeaders,
    import_window,
    parse_or_none,
    read_imports,
)
from malvision.pe.resources import TYPES, read_resources, resource_window
from malvision.triage import byte_histogram, byte_stats, entropy_bits

__all__ = [
    "FEATURE_NAMES", "N_FEATURES", "FEATURE_WIDTHS", "RESOURCE_NAMES", "HEAD_BYTES", "FeatureTap", "features_of",
    "imports_behind",
]  # fmt: skip

_MACHINES = {0x14C: "i386", 0x8664: "amd64", 0xAA64: "arm64"}
_SUBSYSTEMS = {1: "native", 2: "gui", 3: "console", 10: "efi", 11: "efi", 12: "efi", 13: "efi"}
_SECTION_NAMES = (
    ".text", ".data", ".rdata", ".rsrc", ".reloc", ".bss", ".idata", ".edata", ".pdata", ".tls", ".crt", "upx",
)  # fmt: skip


def section_key(name: bytes) -> str | None:
    """The known section name a section's name begins with (``.text``, ``upx``, ...), if any: what its
    ``section_*`` feature counts."""
    low = name.decode("latin-1").lower()
    return next((k for k in _SECTION_NAMES if low.startswith(k)), None)


# Functions whose import says something about behaviour (injection, persistence, networking, crypto,
# anti-debugging, resources, process and file handling), plus common runtime ones as a contrast. Named
# without the A/W suffix (``pe.api_name``); every other name lands in one of N_HASHED buckets.
_APIS = """
VirtualAlloc VirtualAllocEx VirtualProtect VirtualProtectEx VirtualFree WriteProcessMemory ReadProcessMemory
CreateRemoteThread CreateRemoteThreadEx NtUnmapViewOfSection ZwUnmapViewOfSection SetThreadContext
GetThreadContext ResumeThread SuspendThread OpenProcess OpenThread CreateProcess CreateProcessAsUser WinExec
ShellExecute ShellExecuteEx TerminateProcess ExitProcess LoadLibrary LoadLibraryEx GetProcAddress
GetModuleHandle LdrLoadDll CreateToolhelp32Snapshot Process32First Process32Next Module32First Module32Next
EnumProcesses EnumProcessModules IsDebuggerPresent CheckRemoteDebuggerPresent OutputDebugString
NtQueryInformationProcess GetTickCount QueryPerformanceCounter Sleep GetSystemTime GetLocalTime
SetWindowsHookEx GetAsyncKeyState GetKeyState GetForegroundWindow FindWindow RegOpenKeyEx RegSetValueEx
RegCreateKeyEx RegDeleteKey RegDeleteValue RegQueryValueEx CreateService OpenSCManager StartService
ControlService DeleteService CreateFile WriteFile ReadFile DeleteFile MoveFile MoveFileEx CopyFile
FindFirstFile FindNextFile GetTempPath GetTempFileName SetFileAttributes GetWindowsDirectory
GetSystemDirectory CreateMutex OpenMutex InternetOpen InternetOpenUrl InternetReadFile InternetConnect
HttpOpenRequest HttpSendRequest URLDownloadToFile WSAStartup socket connect send recv bind listen accept
gethostbyname inet_addr CryptAcquireContext CryptEncrypt CryptDecrypt CryptGenKey CryptImportKey
CryptCreateHash CryptHashData AdjustTokenPrivileges OpenProcessToken LookupPrivilegeValue GetComputerName
GetUserName GetVersionEx GetVolumeInformation GetLogicalDrives GetDriveType FindResource LoadResource
LockResource SizeofResource CreateThread GetCurrentProcess GetCurrentProcessId GetStartupInfo GetCommandLine
HeapAlloc HeapFree GetLastError SetUnhandledExceptionFilter UnhandledExceptionFilter RaiseException MessageBox
CreateWindowEx DispatchMessage CoCreateInstance CoInitialize CoInitializeEx SysAllocString _CorExeMain
_CorDllMain malloc free memcpy memset strlen printf __getmainargs _initterm __set_app_type _cexit _exit
""".split()  # noqa: SIM905 (a word list reads better than 145 quoted strings)
_DLLS = """
kernel32 user32 advapi32 gdi32 shell32 ole32 oleaut32 comctl32 comdlg32 ws2_32 wsock32 wininet urlmon winhttp
crypt32 ntdll msvcrt shlwapi psapi netapi32 mpr version winmm iphlpapi mscoree rpcrt4 setupapi userenv wtsapi32
secur32 dnsapi
""".split()  # noqa: SIM905
N_HASHED = 128
VERSION_NAMES = (
    "linker_version_major", "linker_version_minor", "image_version_major", "image_version_minor", "checksum_set",
)  # fmt: skip
RESOURCE_NAMES = (
    "res_n_types", "res_log_n_leaves", "res_n_languages", "res_log_rcdata_max", "res_rcdata_max_share",
    "res_log_other_types",
) + tuple(f"res_has_{t}" for t in ("icon", "dialog", "string", "rcdata", "group_icon", "version", "manifest",
                                    "menu", "bitmap", "accelerator", "html"))  # fmt: skip

FEATURE_NAMES: tuple[str, ...] = (
    ("log_size", "entropy", "share_00", "share_ff", "share_printable")
    + tuple(f"hist_{i:x}x" for i in range(16))
    + ("pe_parsed", "pe32_plus")
    + tuple(f"machine_{m}" for m in ("i386", "amd64", "arm64", "other"))
    + tuple(f"subsystem_{s}" for s in ("native", "gui", "console", "efi", "other"))
    + tuple(f"characteristics_bit{b}" for b in range(16))
    + tuple(f"dll_characteristics_bit{b}" for b in range(16))
    + (
        "log_size_of_code", "log_size_of_initialized_data", "log_size_of_uninitialized_data",
        "log_size_of_image", "log_size_of_headers", "log_entry_point", "log_stack_reserve",
        "log_stack_commit", "log_heap_reserve", "log2_file_alignment", "log2_section_alignment",
        "os_version_major", "subsystem_version_major", "n_data_directories",
    )
    + tuple(f"dir_{d}" for d in DIRECTORIES)
    + tuple(f"log_dir_{d}_size" for d in ("import", "resource", "security", "debug", "tls", "basereloc"))
    + (
        "n_sections", "n_executable", "n_writable", "n_writable_executable", "n_empty_raw",
        "n_virtual_over_raw", "n_unnamed_or_odd", "entry_in_executable", "entry_in_last_section",
        "entry_outside_sections", "log_overlay", "overlay_share", "head_entropy",
    )
    + tuple(f"section_{n.strip('.')}" for n in _SECTION_NAMES)
    + ("imports_parsed", "log_n_imports", "log_n_import_dlls", "log_n_ordinal_imports")
    + tuple(f"import_dll_{d}" for d in _DLLS)
    + tuple(f"import_{a}" for a in _APIS)
    + tuple(f"import_other_{k:02x}" for k in range(N_HASHED))
    + CONTENT_NAMES
    + VERSION_NAMES  # features version 4; each version appends, so an older vector is this one's start
    + RESOURCE_NAMES  # version 5
    + WORD_NAMES  # version 6
)  # fmt: skip
N_FEATURES = len(FEATURE_NAMES)
# How many of the features each version has (an older version's model reads the vector's start).
FEATURE_WIDTHS = {6: N_FEATURES}
for _version, _block in ((5, WORD_NAMES), (4, RESOURCE_NAMES), (3, VERSION_NAMES)):
    FEATURE_WIDTHS[_version] = FEATURE_WIDTHS[_version + 1] - len(_block)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_API_INDEX = {a.lower(): _INDEX[f"import_{a}"] for a in _APIS}
_DLL_INDEX = {f"{d}.dll": _INDEX[f"import_dll_{d}"] for d in _DLLS}
_OTHER = _INDEX["import_other_00"]
_CONTENT = _INDEX[CONTENT_NAMES[0]]
_WORDS = _INDEX[WORD_NAMES[0]]


def _log(v: float) -> float:
    return math.log1p(max(0.0, float(v)))


def _header(h: PEHeaders, size: int, f: np.ndarray) -> None:
    """Fill the header and section block of ``f`` from parsed headers."""
    put = lambda name, v: f.__setitem__(_INDEX[name], v)  # noqa: E731
    put("pe_parsed", 1.0)
    put("pe32_plus", float(h.plus))
    put(f"machine_{_MACHINES.get(h.machine, 'other')}", 1.0)
    put(f"subsystem_{_SUBSYSTEMS.get(h.subsystem, 'other')}", 1.0)
    for b in range(16):
        put(f"characteristics_bit{b}", float(h.characteristics >> b & 1))
        put(f"dll_characteristics_bit{b}", float(h.dll_characteristics >> b & 1))
    for name, v in (
        ("log_size_of_code", h.size_of_code), ("log_size_of_initialized_data", h.size_of_initialized_data),
        ("log_size_of_uninitialized_data", h.size_of_uninitialized_data), ("log_size_of_image", h.size_of_image),
        ("log_size_of_headers", h.size_of_headers), ("log_entry_point", h.entry_point),
        ("log_stack_reserve", h.stack_reserve), ("log_stack_commit", h.stack_commit),
        ("log_heap_reserve", h.heap_reserve),
    ):  # fmt: skip
        put(name, _log(v))
    put("log2_file_alignment", math.log2(h.file_alignment) if h.file_alignment else 0.0)
    put("log2_section_alignment", math.log2(h.section_alignment) if h.section_alignment else 0.0)
    put("os_version_major", float(min(h.os_version_major, 20)))
    put("subsystem_version_major", float(min(h.subsystem_version_major, 20)))
    put("n_data_directories", float(min(h.n_data_directories, 16)))
    put("linker_version_major", float(h.linker_version[0]))
    put("linker_version_minor", float(h.linker_version[1]))
    put("image_version_major", float(min(h.image_version[0], 255)))
    put("image_version_minor", float(min(h.image_version[1], 255)))
    put("checksum_set", float(h.checksum != 0))
    sizes = {}
    for d, (_, dsize) in zip(DIRECTORIES, h.directories, strict=False):
        put(f"dir_{d}", float(dsize > 0))
        sizes[d] = dsize
    for d in ("import", "resource", "security", "debug", "tls", "basereloc"):
        put(f"log_dir_{d}_size", _log(sizes.get(d, 0)))
    sections = h.sections[:MAX_SECTIONS]
    put("n_sections", float(min(h.n_sections, MAX_SECTIONS)))
    counts = dict.fromkeys(("n_executable", "n_writable", "n_writable_executable", "n_empty_raw",
                            "n_virtual_over_raw", "n_unnamed_or_odd"), 0)  # fmt: skip
    entry, entry_section, last = h.entry_point, None, len(sections) - 1
    for i, s in enumerate(sections):
        known = section_key(s.name)
        if known:
            put(f"section_{known.strip('.')}", 1.0)
        else:
            counts["n_unnamed_or_odd"] += 1
        x, w = bool(s.characteristics & 0x20000000), bool(s.characteristics & 0x80000000)
        counts["n_executable"] += x
        counts["n_writable"] += w
        counts["n_writable_executable"] += x and w
        counts["n_empty_raw"] += s.raw_size == 0
        counts["n_virtual_over_raw"] += s.virtual_size > 2 * s.raw_size + 4096
        if s.virtual_address <= entry < s.virtual_address + max(s.virtual_size, s.raw_size):
            entry_section = (i, x)
    for k, v in counts.items():
        put(k, float(v))
    put("entry_in_executable", float(bool(entry_section and entry_section[1])))
    put("entry_in_last_section", float(entry_section is not None and entry_section[0] == last))
    put("entry_outside_sections", float(entry_section is None))
    end = max((s.raw_pointer + s.raw_size for s in sections if s.raw_size), default=0)
    overlay = max(0, size - end) if end else 0
    put("log_overlay", _log(overlay))
    put("overlay_share", overlay / size if size else 0.0)


def _imports(headers: PEHeaders, window: bytes, start: int, f: np.ndarray) -> None:
    """Fill the import block of ``f`` from the import table in ``window`` (file bytes from ``start``)."""
    imports = read_imports(headers, window, start)
    if not imports.parsed:
        return
    f[_INDEX["imports_parsed"]] = 1.0
    f[_INDEX["log_n_imports"]] = _log(len(imports.functions))
    f[_INDEX["log_n_import_dlls"]] = _log(len(imports.dlls))
    f[_INDEX["log_n_ordinal_imports"]] = _log(imports.n_ordinal)
    for dll in imports.dlls:
        if (i := _DLL_INDEX.get(dll)) is not None:
            f[i] = 1.0
    for name in imports.functions:
        f[_function_index(name)] = 1.0


def _resources(window: bytes, size: int, f: np.ndarray) -> None:
    """Fill the resource block of ``f`` from the resource directory's tree in ``window``."""
    res = read_resources(window)
    if not res.parsed:
        return
    put = lambda name, v: f.__setitem__(_INDEX[name], v)  # noqa: E731
    put("res_n_types", float(len(res.types)))
    put("res_log_n_leaves", _log(res.leaves))
    put("res_n_languages", float(len(set(res.languages))))
    put("res_log_rcdata_max", _log(res.rcdata_max))
    put("res_rcdata_max_share", min(1.0, res.rcdata_max / max(size, 1)))
    put("res_log_other_types", _log(sum(t not in TYPES for t in res.types)))
    for t in res.types:
        if (i := _INDEX.get(f"res_has_{TYPES.get(t)}")) is not None:
            f[i] = 1.0


def _function_index(name: str) -> int:
    """The feature an imported function sets: its own, or its hash bucket."""
    low = name.lower()
    i = _API_INDEX.get(low)
    return i if i is not None else _OTHER + zlib.crc32(low.encode()) % N_HASHED


def imports_behind(data: bytes | bytearray | memoryview, headers: PEHeaders | None) -> dict[str, list[str]]:
    """For a whole file in memory and its parsed ``headers``: which of its imported functions
    (``dll!function``) set each import feature (what stands behind a hashed bucket such as
    ``import_other_2a``, for explanations)."""
    if headers is None:
        return {}
    start, end = import_window(headers) or (0, 0)
    imports = read_imports(headers, bytes(data[start:end]), start)
    out: dict[str, list[str]] = {}
    for name, qualified in zip(imports.functions, imports.qualified(), strict=True):
        out.setdefault(FEATURE_NAMES[_function_index(name)], []).append(qualified)
    return out


def _vector(
    head: bytes,
    size: int,
    hist: np.ndarray,
    headers: PEHeaders | None,
    window: bytes,
    start: int,
    content: np.ndarray,
    resources: bytes,
    words: np.ndarray,
) -> np.ndarray:
    """The float32 feature vector (``FEATURE_NAMES``) of a ``size``-byte file: its first 64 KiB
    ``head``, its whole-file 256-bin byte histogram ``hist``, its parsed ``headers`` (None: not a PE,
    the header block stays zero), the bytes of ``import_window`` (``window``, from file offset
    ``start``), its ``ContentTap`` blocks (content and ``words``) and the bytes of ``resource_window``."""
    f = np.zeros(N_FEATURES, dtype=np.float64)
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    f[_INDEX["log_size"]] = _log(size)
    if total:
        f[_INDEX["entropy"]] = byte_stats(hist).entropy
        f[_INDEX["share_00"]] = hist[0] / total
        f[_INDEX["share_ff"]] = hist[255] / total
        f[_INDEX["share_printable"]] = hist[0x20:0x7F].sum() / total
        f[_INDEX["hist_0x"] : _INDEX["hist_0x"] + 16] = hist.reshape(16, 16).sum(axis=1) / total
    f[_INDEX["head_entropy"]] = entropy_bits(head)
    if headers is not None:
        _header(headers, size, f)
        _imports(headers, window, start, f)
        _resources(resources, size, f)
    f[_CONTENT : _CONTENT + len(content)] = content
    f[_WORDS : _WORDS + len(words)] = words
    return f.astype(np.float32)


class FeatureTap:
    """One pass over a file's chunks: whole-file byte histogram, the first ``HEAD_BYTES``, the PE
    headers parsed from them once, and (``vector``) what only the feature vector needs: the ranges
    ``import_window`` (at most 2 MiB) and ``resource_window`` (64 KiB) name, and the content block
    (``ContentTap``)."""

    def __init__(self, vector: bool = True) -> None:
        self.hist = np.zeros(256, dtype=np.int64)
        self.head = bytearray()
        self.headers: PEHeaders | None = None
        self._content = ContentTap() if vector else None
        self._parsed = False
        self._imports = self._resources = _Slice(None)
        self._pos = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
            if len(self.head) == HEAD_BYTES:
                self._locate()  # every byte read so far is in head
        self._pos += len(chunk)
        self._imports.take(chunk, self._pos - len(chunk))
        self._resources.take(chunk, self._pos - len(chunk))
        # the content tap counts the bytes by section and hands back the chunk's histogram
        self.hist += byte_histogram(chunk) if self._content is None else self._content.update(chunk)

    def _locate(self) -> None:
        self._parsed = True
        self.headers = parse_or_none(bytes(self.head))
        if self._content is not None and self.headers is not None:
            self._imports = _Slice(import_window(self.headers))
            self._resources = _Slice(resource_window(self.headers))
            self._imports.take(self.head, 0)
            self._resources.take(self.head, 0)
        if self._content is not None:
            self._content.locate(self.headers, self.head)

    def finish(self) -> None:
        """Parse the headers of a file shorter than ``HEAD_BYTES``, once its last chunk is in."""
        if not self._parsed:
            self._locate()

    def features(self, size: int) -> np.ndarray:
        """The feature vector, once every chunk of a ``size``-byte file has gone through ``update``."""
        if self._content is None:
            raise ValueError("FeatureTap(vector=False) gathers no feature vector")
        self.finish()
        content = self._content.features(size)
        return _vector(
            bytes(self.head), size, self.hist, self.headers, bytes(self._imports.data), self._imports.lo,
            content, bytes(self._resources.data), self._content.words(),
        )  # fmt: skip


class _Slice:
    """The bytes of one file range ``[lo, hi)`` (None: none), kept as a file's chunks stream past."""

    def __init__(self, span: tuple[int, int] | None) -> None:
        self.lo, self.hi = span or (0, 0)
        self.data = bytearray()

    def take(self, buf: bytes | bytearray | memoryview, at: int) -> None:
        lo, hi = max(self.lo + len(self.data), at), min(self.hi, at + len(buf))
        if hi > lo:
            self.data += buf[lo - at : hi - at]


def features_of(data: bytes | bytearray | memoryview) -> np.ndarray:
    """The feature vector of a whole file in memory."""
    tap = FeatureTap()
    tap.update(data)
    return tap.features(len(data))
