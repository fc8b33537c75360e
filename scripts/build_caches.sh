#!/usr/bin/env bash
# Every PE detection cache from the real data, in one command:
#
#   SOURCES=/work/.mirror bash scripts/build_caches.sh      # the caches: minutes once the corpora are built
#
# It first runs scripts/build_corpora.sh, which builds every missing corpus (hours of downloads the first time;
# see its header): SOURCES is the folder holding the eight public malware collections of
# ../shared/data/malware_v2_manifest.csv and the 1,044 repositories of scripts/benign_github*.csv (fetched
# snapshots `owner+repo/repo`, or `git clone`s). Then it builds each cache below (and the later ones of the
# file, up to pe-features-v17) only when missing. The corpora it began with, and its first caches:
#   ~/.cache/malvision/benign, benign-extra, benign-tools   the benign corpora (pinned packages)
#   ~/.cache/malvision/malware_v2                           1,076 malware files, sha256 checked
# and then the caches of the same 4,669 files (3,348 benign from 460 projects; the shared zip's 245 and
# the collections' 1,076 malware, each with its collection), under ~/.cache/malvision/caches:
#   pe-features-v2 (PE structure vector), pe-image64-v2 (byte plot), pe-views64-v2 (plot + entropy),
#   pe-fused64-v2 (vector + plot), pe-bytes1m-v2 (first MiB).
# Then the GUI widening (~/.cache/malvision/benign-gui: 2,819 files of pinned pywin32, PyInstaller, py2exe,
# cx_Freeze, Inno Setup and electron-winstaller releases, 137 of them 32-bit GUI executables) joins them in
# pe-features-v3 (5,518 files: 849 of benign-gui), at most 700 files a benign project (the largest v2 project has 693, so
# every v2 file stays in and v3's folds hold v2's file by file; pywin32 keeps 700 of its 2,670).
# A missing repository or a changed file stops it with one line naming it. benign-heldout is never used
# here: it stays out of training (SET=heldout bash scripts/build_extra_benign.sh builds it for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
MV=${MV:-.venv/bin/malvision}
C=${MALVISION_CACHE:-$HOME/.cache/malvision}  # the folder malvision itself reads (data/build.py cache_home)
mkdir -p "$C/caches"
bash scripts/build_corpora.sh   # every corpus, each only when missing (SOURCES for the malware collections)

CORPORA=(--benign "$C/benign" --benign "$C/benign-extra" --benign "$C/benign-tools" --malware "$C/malware_v2")
build() {  # build NAME ARGS...: a cache, unless it is there already
    local name=$1; shift
    [ -f "$C/caches/$name/meta.json" ] || $MV data build "$@" "${CORPORA[@]}" --out "$C/caches/$name"
}
build pe-features-v2 --kind features
build pe-image64-v2 --kind image --image-size 64
build pe-views64-v2 --kind views --image-size 64
build pe-fused64-v2 --kind fused --image-size 64
build pe-bytes1m-v2 --kind bytes --max-len 1048576
CORPORA+=(--benign "$C/benign-gui" --max-per-group 700)
build pe-features-v3 --kind features
# Issue 19: the calibration widening (~/.cache/malvision/benign-calib: 135 more PyPI projects, 25 npm ones,
# two Mono programs) joins them in pe-features-v4, for a 0.1% FPR threshold that more than 3-4 files set.
[ -f "$C/benign-calib/manifest_ext.csv" ] || SET=calib bash scripts/build_extra_benign.sh
CORPORA+=(--benign "$C/benign-calib")
build pe-features-v4 --kind features
# The 32-bit widening (~/.cache/malvision/benign-win32: 842 i386 executables, 222 of them GUI programs, of 50
# projects) in pe-features-v5, the shipped default's data. Listed first, so the 700-a-project cap keeps its
# GUI programs (Wine's 32-bit notepad, regedit, ...; Pythonwin) over more of the same projects' 64-bit DLLs.
build pe-features-v5 --kind features --benign "$C/benign-win32"
# The GitHub widenings (~/.cache/malvision/benign-github: 739 files of 112 projects that commit their Windows
# programs: NSIS and WiX stubs, Notepad3, HeidiSQL, PuTTY, Far Manager, ...; benign-github2: 535 files of 112
# more, ViaThinkSoft's Delphi programs counted as one) in pe-features-v7 (the first) and pe-features-v8 (both,
# the shipped default's data since 2026-12-02): the default before them flagged 231 of these 1,272 files at
# its 0.1% threshold. pe-bytes1m-gh: the v2 files and the first GitHub widening, the first MiB of each.
build pe-features-v7 --kind features --benign "$C/benign-win32" --benign "$C/benign-github"
build pe-features-v8 --kind features --benign "$C/benign-win32" --benign "$C/benign-github" --benign "$C/benign-github2"
# Features version 3 (convert/contentfeatures.py: section entropies, strings, markers) on pe-features-v8's
# files: pe-features-v9. (Caches of features 2, v2 to v8, are refused by this malvision: rebuild them.)
build pe-features-v9 --kind features --kind-version 3 --benign "$C/benign-win32" --benign "$C/benign-github" --benign "$C/benign-github2"
# The shipped default's data since 2026-12-02 (afternoon): the three GitHub widenings (the third: 1,167 files of
# 247 projects), with features version 3.
build pe-features-v10 --kind features --kind-version 3 --benign "$C/benign-win32" --benign "$C/benign-github" \
    --benign "$C/benign-github2" --benign "$C/benign-github3"
# 2026-12-02 (evening): the fourth GitHub set (822 files of 320 projects) on top.
build pe-features-v11 --kind features --kind-version 3 --benign "$C/benign-win32" --benign "$C/benign-github" \
    --benign "$C/benign-github2" --benign "$C/benign-github3" --benign "$C/benign-github4"
# 2026-12-02 (13:00 UTC): the PyPI bulk widening (benign-bulk, issue 19: a calibration set that puts dozens of benign files
# above the 0.1% threshold) on top.
build pe-features-v12 --kind features --kind-version 3 --benign "$C/benign-win32" --benign "$C/benign-github" \
    --benign "$C/benign-github2" --benign "$C/benign-github3" --benign "$C/benign-github4" --benign "$C/benign-bulk"
# 2026-12-02 (15:30 UTC): the fifth GitHub set (benign-github5: 4,258 files of 548 projects, found after the bulk set;
# the v12 default flagged 68 of them at its threshold before training on them) on top.
V13=(--benign "$C/benign-win32" --benign "$C/benign-github" --benign "$C/benign-github2" --benign "$C/benign-github3"
    --benign "$C/benign-github4" --benign "$C/benign-bulk" --benign "$C/benign-github5")  # v13's benign corpora
build pe-features-v13 --kind features --kind-version 3 "${V13[@]}"
# pe-detector's data from 2026-12-02 17:00 to 21:30 UTC (mc-v13): pe-features-v13's files, the first 16 KiB of each (what MalConv reads).
build pe-bytes16k-v13 --kind bytes --max-len 16384 "${V13[@]}"
# pe-detector's data since 2026-12-02 (21:30 UTC): the same files' histograms (convert/histograms.py).
build pe-hist-v13 --kind histograms "${V13[@]}"
# 2026-12-03: the sixth GitHub set (benign-github6) on top of pe-features-v13's files: pe-features-v14, and their
# histograms (pe-hist-v14).
build pe-features-v14 --kind features --kind-version 3 "${V13[@]}" --benign "$C/benign-github6"
build pe-hist-v14 --kind histograms "${V13[@]}" --benign "$C/benign-github6"
# 2026-12-03 (evening): features version 4 (the linker and image versions and the checksum flag, appended to the
# vector) on pe-features-v13's files: pe-features-v15. (pe-features-v9 to v14 were built as features 3, which this
# malvision still reads: a model trained on them reads the start of today's vector. On a fresh machine each cache
# here names the version it was built in (`--kind-version`), as `malvision reproduce` does for an older card.)
build pe-features-v15 --kind features --kind-version 4 "${V13[@]}"
# 2026-12-03 (evening, later): features version 5 (the resource directory, appended) on the same files:
# pe-features-v16.
build pe-features-v16 --kind features --kind-version 5 "${V13[@]}"
# 2026-12-03 (night): features version 6 (the words of the strings, appended) on the same files: pe-features-v17.
build pe-features-v17 --kind features "${V13[@]}"
[ -f "$C/caches/pe-bytes1m-gh/meta.json" ] || $MV data build --kind bytes --max-len 1048576 --benign "$C/benign" \
    --benign "$C/benign-extra" --benign "$C/benign-tools" --benign "$C/benign-github" \
    --malware-zip ../shared/data/thezoo_pe_malware.zip --malware "$C/malware_v2" --out "$C/caches/pe-bytes1m-gh"
echo "caches ready in $C/caches"
