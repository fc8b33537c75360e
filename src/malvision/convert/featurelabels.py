"""What each PE feature is called by a malware analyst, what it means, and which bytes it comes from.

``FEATURE_NAMES`` (``convert.pefeatures``) stay the stable ids models and caches are keyed on; this
module gives each one the name an analyst knows (``IMAGE_DLLCHARACTERISTICS_NX_COMPAT``,
``kernel32.dll!VirtualAlloc``, ``section .rsrc``), a one-line description, and the file range it is
read from (``feature_span``), so explanations can point at the bytes behind a feature.
"""

from __future__ import annotations

from typing import NamedTuple

from malvision.convert.contentfeatures import CONTENT_NAMES, WORD_NAMES
from malvision.convert.pefeatures import FEATURE_NAMES, RESOURCE_NAMES, section_key
from malvision.pe import PEHeaders, import_window
from malvision.pe.resources import resource_window

__all__ = ["FeatureLabel", "FEATURE_LABELS", "feature_label", "feature_span"]


class FeatureLabel(NamedTuple):
    """An analyst's name for a feature and a short description of its value."""

    label: str
    description: str


_FILE_FLAGS = (
    "RELOCS_STRIPPED", "EXECUTABLE_IMAGE", "LINE_NUMS_STRIPPED", "LOCAL_SYMS_STRIPPED",
    "AGGRESSIVE_WS_TRIM", "LARGE_ADDRESS_AWARE", "RESERVED_0x0040", "BYTES_REVERSED_LO", "32BIT_MACHINE",
    "DEBUG_STRIPPED", "REMOVABLE_RUN_FROM_SWAP", "NET_RUN_FROM_SWAP", "SYSTEM", "DLL", "UP_SYSTEM_ONLY",
    "BYTES_REVERSED_HI",
)  # fmt: skip
_DLL_FLAGS = (
    "RESERVED_0x0001", "RESERVED_0x0002", "RESERVED_0x0004", "RESERVED_0x0008", "RESERVED_0x0010",
    "HIGH_ENTROPY_VA", "DYNAMIC_BASE", "FORCE_INTEGRITY", "NX_COMPAT", "NO_ISOLATION", "NO_SEH", "NO_BIND",
    "APPCONTAINER", "WDM_DRIVER", "GUARD_CF", "TERMINAL_SERVER_AWARE",
)  # fmt: skip
_MACHINE = {"i386": "IMAGE_FILE_MACHINE_I386", "amd64": "IMAGE_FILE_MACHINE_AMD64",
            "arm64": "IMAGE_FILE_MACHINE_ARM64", "other": "Machine: other"}  # fmt: skip
_SUBSYSTEM = {
    "native": "IMAGE_SUBSYSTEM_NATIVE", "gui": "IMAGE_SUBSYSTEM_WINDOWS_GUI",
    "console": "IMAGE_SUBSYSTEM_WINDOWS_CUI", "efi": "IMAGE_SUBSYSTEM_EFI_*", "other": "Subsystem: other",
}  # fmt: skip
_DIRECTORY = {
    "export": "EXPORT", "import": "IMPORT", "resource": "RESOURCE", "exception": "EXCEPTION",
    "security": "SECURITY", "basereloc": "BASERELOC", "debug": "DEBUG", "architecture": "ARCHITECTURE",
    "globalptr": "GLOBALPTR", "tls": "TLS", "load_config": "LOAD_CONFIG", "bound_import": "BOUND_IMPORT",
    "iat": "IAT", "delay_import": "DELAY_IMPORT", "clr": "COM_DESCRIPTOR", "reserved": "RESERVED",
}  # fmt: skip
_DIRECTORY_MEANS = {
    "security": "an Authenticode signature", "clr": ".NET metadata", "tls": "TLS callbacks",
    "resource": "resources", "export": "exported functions", "import": "imported functions",
    "basereloc": "base relocations", "debug": "debug information", "delay_import": "delay-loaded imports",
}  # fmt: skip
_OPTIONAL = {
    "log_size_of_code": ("SizeOfCode", "log(1 + bytes of code sections)"),
    "log_size_of_initialized_data": ("SizeOfInitializedData", "log(1 + bytes of initialised data)"),
    "log_size_of_uninitialized_data": ("SizeOfUninitializedData", "log(1 + bytes of uninitialised data)"),
    "log_size_of_image": ("SizeOfImage", "log(1 + size of the image in memory)"),
    "log_size_of_headers": ("SizeOfHeaders", "log(1 + size of the headers on disk)"),
    "log_entry_point": ("AddressOfEntryPoint", "log(1 + entry point RVA)"),
    "log_stack_reserve": ("SizeOfStackReserve", "log(1 + stack reserve)"),
    "log_stack_commit": ("SizeOfStackCommit", "log(1 + stack commit)"),
    "log_heap_reserve": ("SizeOfHeapReserve", "log(1 + heap reserve)"),
    "log2_file_alignment": ("FileAlignment", "log2 of the file alignment"),
    "log2_section_alignment": ("SectionAlignment", "log2 of the section alignment"),
    "os_version_major": ("MajorOperatingSystemVersion", "the Windows version the file asks for"),
    "subsystem_version_major": ("MajorSubsystemVersion", "the subsystem version the file asks for"),
    "n_data_directories": ("NumberOfRvaAndSizes", "how many data directories the header declares"),
    "linker_version_major": ("MajorLinkerVersion", "the version of the linker that built the file"),
    "linker_version_minor": ("MinorLinkerVersion", "the linker's minor version"),
    "image_version_major": ("MajorImageVersion", "the file's own version, as linked (at most 255)"),
    "image_version_minor": ("MinorImageVersion", "the file's own minor version (at most 255)"),
    "checksum_set": ("CheckSum", "1 when the header carries a checksum (drivers must)"),
}
_PLAIN = {
    "log_size": ("file size", "log(1 + bytes)"),
    "entropy": ("file entropy", "Shannon entropy of the whole file, bits per byte (8: packed or encrypted)"),
    "share_00": ("0x00 bytes", "share of the file's bytes that are 0x00"),
    "share_ff": ("0xFF bytes", "share of the file's bytes that are 0xFF"),
    "share_printable": ("printable bytes", "share of the file's bytes that are printable ASCII"),
    "pe_parsed": ("PE headers parse", "1 when the MZ/PE headers parse"),
    "pe32_plus": ("PE32+ (64-bit)", "1 for a PE32+ optional header (64-bit image)"),
    "n_sections": ("NumberOfSections", "sections in the section table"),
    "n_executable": ("executable sections", "sections with IMAGE_SCN_MEM_EXECUTE"),
    "n_writable": ("writable sections", "sections with IMAGE_SCN_MEM_WRITE"),
    "n_writable_executable": ("writable + executable sections",
                              "sections both IMAGE_SCN_MEM_WRITE and IMAGE_SCN_MEM_EXECUTE (self-modifying code, unpackers)"),
    "n_empty_raw": ("sections empty on disk", "sections with SizeOfRawData 0 (filled at run time, as packers do)"),
    "n_virtual_over_raw": ("sections larger in memory", "sections whose VirtualSize exceeds twice SizeOfRawData + 4 KiB"),
    "n_unnamed_or_odd": ("sections with unusual names", "sections whose name is none of the usual ones"),
    "entry_in_executable": ("entry point in an executable section", "1 when AddressOfEntryPoint lies in an executable section"),
    "entry_in_last_section": ("entry point in the last section", "1 when AddressOfEntryPoint lies in the last section (packers, infectors)"),
    "entry_outside_sections": ("entry point outside every section", "1 when AddressOfEntryPoint lies in no section"),
    "log_overlay": ("overlay size", "log(1 + bytes after the last section: installers, appended payloads)"),
    "overlay_share": ("overlay share", "share of the file after the last section"),
    "head_entropy": ("header-area entropy", "entropy of the first 64 KiB, bits per byte"),
    "imports_parsed": ("import table parses", "1 when the import directory could be read"),
    "log_n_imports": ("imported functions", "log(1 + imported functions)"),
    "log_n_import_dlls": ("imported DLLs", "log(1 + DLLs in the import table)"),
    "log_n_ordinal_imports": ("imports by ordinal", "log(1 + functions imported by ordinal, not by name)"),
}  # fmt: skip
_CONTENT = {
    "section_entropy_max": ("highest section entropy", "entropy of the most random section's raw bytes, bits per byte"),
    "section_entropy_min": ("lowest section entropy", "entropy of the least random section's raw bytes (-1: none)"),
    "section_entropy_mean": ("mean section entropy", "mean of the sections' entropies, bits per byte"),
    "section_entropy_weighted": ("section entropy, size-weighted", "the sections' entropies weighted by their raw sizes"),
    "entry_section_entropy": ("entry point section entropy", "entropy of the section holding AddressOfEntryPoint (-1: none)"),
    "high_entropy_share": ("share in high-entropy sections", "share of the file in sections above 7 bits a byte (packed or encrypted)"),
    "n_high_entropy_sections": ("high-entropy sections", "sections whose raw bytes exceed 7 bits a byte"),
    "overlay_entropy": ("overlay entropy", "entropy of the bytes after the last section (-1: no overlay)"),
    "headers_entropy": ("headers entropy", "entropy of the first SizeOfHeaders bytes"),
    "log_entry_section_raw": ("entry section size on disk", "log(1 + SizeOfRawData of the entry point's section)"),
    "log_entry_section_virtual": ("entry section size in memory", "log(1 + VirtualSize of the entry point's section)"),
    "strings_log_n": ("ASCII strings", "log(1 + runs of 5 or more printable ASCII bytes)"),
    "strings_mean_length": ("ASCII string length", "mean length of those strings"),
    "strings_entropy": ("ASCII string entropy", "entropy of the strings' characters, bits per character"),
    "strings_share": ("share in ASCII strings", "share of the file's bytes inside those strings"),
}  # fmt: skip
# Where the bundled API list's functions usually come from (the feature counts the name from any DLL).
_API_DLL = {
    "advapi32": "RegOpenKeyEx RegSetValueEx RegCreateKeyEx RegDeleteKey RegDeleteValue RegQueryValueEx "
    "CreateService OpenSCManager StartService ControlService DeleteService CryptAcquireContext CryptEncrypt "
    "CryptDecrypt CryptGenKey CryptImportKey CryptCreateHash CryptHashData AdjustTokenPrivileges "
    "OpenProcessToken LookupPrivilegeValue GetUserName CreateProcessAsUser",
    "user32": "SetWindowsHookEx GetAsyncKeyState GetKeyState GetForegroundWindow FindWindow MessageBox "
    "CreateWindowEx DispatchMessage",
    "ntdll": "NtUnmapViewOfSection ZwUnmapViewOfSection NtQueryInformationProcess LdrLoadDll",
    "shell32": "ShellExecute ShellExecuteEx",
    "wininet": "InternetOpen InternetOpenUrl InternetReadFile InternetConnect HttpOpenRequest HttpSendRequest",
    "urlmon": "URLDownloadToFile",
    "ws2_32": "WSAStartup socket connect send recv bind listen accept gethostbyname inet_addr",
    "psapi": "EnumProcesses EnumProcessModules",
    "ole32": "CoCreateInstance CoInitialize CoInitializeEx",
    "oleaut32": "SysAllocString",
    "mscoree": "_CorExeMain _CorDllMain",
    "msvcrt": "malloc free memcpy memset strlen printf __getmainargs _initterm __set_app_type _cexit _exit",
}
_DLL_OF = {api: f"{dll}.dll" for dll, apis in _API_DLL.items() for api in apis.split()}


def _content_label(name: str) -> FeatureLabel:
    if name in _CONTENT:
        return FeatureLabel(*_CONTENT[name])
    if name.startswith("strings_char_"):
        c = chr(int(name[13:], 16))
        return FeatureLabel(f"strings: {c!r}", f"share of {c!r} among the ASCII strings' characters")
    if name.startswith("marker_"):
        return FeatureLabel(
            f"mentions of {name[7:]}", f"log(1 + times the file holds the {name[7:]} marker string)"
        )
    section = f".{name.removesuffix('_entropy')}"  # text_entropy, rdata_entropy, ...
    return FeatureLabel(f"section {section} entropy", f"entropy of the first {section} section (-1: none)")


_RESOURCES = {
    "res_n_types": ("resource types", "how many types the resource directory holds"),
    "res_log_n_leaves": ("resources", "log(1 + resources in the resource directory, each language counted)"),
    "res_n_languages": ("resource languages", "how many languages the resources are in"),
    "res_log_rcdata_max": ("largest RT_RCDATA", "log(1 + bytes of the largest raw-data resource)"),
    "res_rcdata_max_share": ("RT_RCDATA share", "the largest raw-data resource's share of the file"),
    "res_log_other_types": ("other resource types", "log(1 + resource types that are not a predefined RT_*)"),
} | {
    n: (f"RT_{n[8:].upper()}", f"1 when the resource directory has RT_{n[8:].upper()} resources")
    for n in RESOURCE_NAMES
    if n.startswith("res_has_")
}


_WORDS = {
    n: (f'word "{n[5:]}"', f'log(1 + times "{n[5:]}" is a word of the bytes or the UTF-16 strings, any case)')
    for n in WORD_NAMES
}


def _label(name: str) -> FeatureLabel:
    if (plain := _PLAIN.get(name) or _RESOURCES.get(name) or _WORDS.get(name)) is not None:
        return FeatureLabel(*plain)
    if name in CONTENT_NAMES:
        return _content_label(name)
    if name in _OPTIONAL:
        field, what = _OPTIONAL[name]
        return FeatureLabel(field, f"optional header {field}: {what}")
    head, _, rest = name.rpartition("_bit")
    if head == "characteristics":
        flag = f"IMAGE_FILE_{_FILE_FLAGS[int(rest)]}"
        return FeatureLabel(
            flag, f"1 when the file header's Characteristics has {flag} (0x{1 << int(rest):04x})"
        )
    if head == "dll_characteristics":
        flag = f"IMAGE_DLLCHARACTERISTICS_{_DLL_FLAGS[int(rest)]}"
        return FeatureLabel(
            flag, f"1 when the optional header's DllCharacteristics has {flag} (0x{1 << int(rest):04x})"
        )
    if name.startswith("hist_"):
        hi = int(name[5], 16)
        return FeatureLabel(
            f"bytes 0x{hi:x}0-0x{hi:x}f", f"share of the file's bytes from 0x{hi:x}0 to 0x{hi:x}f"
        )
    if name.startswith("machine_"):
        return FeatureLabel(_MACHINE[name[8:]], "1 when the file header's Machine is this CPU")
    if name.startswith("subsystem_"):
        return FeatureLabel(_SUBSYSTEM[name[10:]], "1 when the optional header's Subsystem is this one")
    if name.startswith("log_dir_"):
        d = name[8:].removesuffix("_size")
        entry = f"IMAGE_DIRECTORY_ENTRY_{_DIRECTORY[d]}"
        return FeatureLabel(f"{entry} size", f"log(1 + size of the {d} directory)")
    if name.startswith("dir_"):
        d = name[4:]
        entry = f"IMAGE_DIRECTORY_ENTRY_{_DIRECTORY[d]}"
        means = f" ({_DIRECTORY_MEANS[d]})" if d in _DIRECTORY_MEANS else ""
        return FeatureLabel(entry, f"1 when the file has a {d} directory{means}")
    if name.startswith("section_"):
        s = name[8:]
        shown = "UPX*" if s == "upx" else f".{s}"
        return FeatureLabel(f"section {shown}", f"1 when a section is named {shown} (or starts so)")
    if name.startswith("import_dll_"):
        dll = f"{name[11:]}.dll"
        return FeatureLabel(f"imports {dll}", f"1 when the import table links {dll}")
    if name.startswith("import_other_"):
        k = name[13:]
        return FeatureLabel(
            f"other imports #{k}",
            f"1 when the file imports any function whose name hashes to bucket 0x{k} (the file's own are listed)",
        )
    if name.startswith("import_"):
        api = name[7:]
        dll = _DLL_OF.get(api, "kernel32.dll")
        return FeatureLabel(
            f"{dll}!{api}", f"1 when the file imports {api} (A/W variants alike, from any DLL; usually {dll})"
        )
    return FeatureLabel(name, name)


FEATURE_LABELS: dict[str, FeatureLabel] = {n: _label(n) for n in FEATURE_NAMES}


def feature_label(name: str) -> FeatureLabel:
    """The analyst's name and description of feature ``name`` (itself when unknown)."""
    return FEATURE_LABELS.get(name) or FeatureLabel(name, name)


def feature_span(name: str, headers: PEHeaders | None, size: int) -> tuple[int, int] | None:
    """The file range ``[start, end)`` feature ``name`` is read from, or None for the whole file
    (byte statistics) or where the file has no such part."""
    if (
        headers is None
        or name.startswith(("hist_", "share_"))
        or name in ("log_size", "entropy", "pe_parsed")
        or name.startswith("word_")  # counted over the whole file
    ):
        return None
    if name in CONTENT_NAMES:
        return _content_span(name, headers, size)
    if name.startswith("import") or name.endswith("_imports"):
        return import_window(headers)
    if name.startswith("res_"):
        return resource_window(headers)
    if name == "head_entropy":
        return (0, min(size, 1 << 16))
    if name.startswith("section_") or name.startswith("entry_") or name in ("log_overlay", "overlay_share"):
        return _section_span(name, headers, size)
    # every other feature is a header field or a count over the section table
    table_end = headers.optional_offset + headers.optional_size + 40 * len(headers.sections)
    return (0, min(size, table_end))


def _section_span(name: str, headers: PEHeaders, size: int) -> tuple[int, int] | None:
    """The bytes of the section a section feature names, of the entry point's section, or the overlay."""
    if name in ("log_overlay", "overlay_share"):
        end = headers.raw_end()
        return (end, size) if 0 < end < size else None
    if name.startswith("entry_"):
        hit = headers.section_of(headers.entry_point)
    else:
        want = name[8:]
        hit = next(
            (
                s
                for s in headers.sections
                if s.raw_size and (key := section_key(s.name)) is not None and key.strip(".") == want
            ),
            None,
        )
    if hit is None or not hit.raw_size:
        return None
    return (hit.raw_pointer, min(size, hit.raw_pointer + hit.raw_size))


def _content_span(name: str, headers: PEHeaders, size: int) -> tuple[int, int] | None:
    """The bytes of the section, headers or overlay a content feature measures (None: all of them)."""
    if name == "headers_entropy":
        return (0, min(size, headers.size_of_headers))
    if name == "overlay_entropy":
        return _section_span("log_overlay", headers, size)
    if name in ("entry_section_entropy", "log_entry_section_raw", "log_entry_section_virtual"):
        return _section_span("entry_", headers, size)
    if name in ("text_entropy", "rdata_entropy", "data_entropy", "rsrc_entropy"):
        return _section_span(f"section_{name[: -len('_entropy')]}", headers, size)
    return None
