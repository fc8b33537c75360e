#!/usr/bin/env bash
# Every corpus the shipped models are trained on, each built only when missing, in the order their
# de-duplication needs (a later benign corpus leaves out files of the earlier ones):
#
#   SOURCES=/path/to/collections bash scripts/build_corpora.sh
#
#   ~/.cache/malvision/big2015_opcodes   BIG2015 opcode sequences, unpacked from ../shared   0.5 GB, 1 min
#   ~/.cache/malvision/benign            the shared corpus script (apt, PyPI, npm)          2.5 GB, ~15 min
#   ~/.cache/malvision/benign-extra      scripts/build_extra_benign.sh                       2.9 GB, ~15 min
#   ~/.cache/malvision/benign-tools      SET=tools                                            0.1 GB, 2 min
#   ~/.cache/malvision/benign-gui        SET=gui                                              0.9 GB, ~10 min
#   ~/.cache/malvision/benign-heldout    SET=heldout: never trained on, left out by later sets 0.9 GB
#   ~/.cache/malvision/benign-calib      SET=calib                                            4.7 GB
#   ~/.cache/malvision/benign-win32      SET=win32 (i386 must be a dpkg architecture)         4.0 GB, ~10 min
#   ~/.cache/malvision/benign-tail       SET=tail (Delphi, UPX-packed, Sysinternals-like tools) 0.1 GB, ~2 min
#   ~/.cache/malvision/malware_v2        1,076 malware files of eight public collections     0.9 GB
#   ~/.cache/malvision/benign-github     scripts/build_github_benign.py: PE files 107 projects  0.4 GB, seconds
#                                        commit to GitHub (scripts/benign_github.csv pins each)
#   ~/.cache/malvision/benign-github2    the same for 101 more projects (benign_github2.csv)   0.2 GB, seconds
#   ~/.cache/malvision/benign-github3    1,167 files of 247 more projects (benign_github3.csv) 0.6 GB, seconds
#   ~/.cache/malvision/benign-github-heldout  463 files of 124 more projects, never trained on:   0.2 GB, seconds
#                                        the shipped default's test on programs (benign_github_heldout.csv)
#   ~/.cache/malvision/benign-github4    822 files of 320 more projects (benign_github4.csv),    0.4 GB, seconds
#                                        found after the held-out set, none of its projects or file names
#   ~/.cache/malvision/benign-bulk       SET=bulk: 8,819 files of 646 PyPI projects and 298 npm 21 GB, ~30 min
#                                        packages (scripts/benign_bulk.txt, benign_bulk_npm.txt)
#   ~/.cache/malvision/benign-github5    4,258 files of 548 more projects (benign_github5.csv),  1.6 GB, 30 s
#                                        found after the bulk set, none of its or the held-out set's files
#   ~/.cache/malvision/benign-github-heldout2  846 files of 111 more projects, never trained on: a second 0.2 GB, seconds
#                                        test on programs (benign_github_heldout2.csv), no trained project or file name
#   ~/.cache/malvision/benign-github6    1,333 files of 313 more projects (benign_github6.csv),  0.5 GB, seconds
#                                        found after the second held-out set, none of its projects or file names
#
# Downloads peak above the kept sizes (each script keeps its archives in <corpus>/work; npm's own cache
# grows by about 0.6 GB): plan for 20 GB free (10 GB before heldout, calib and win32), and 40 GB more for
# benign-bulk (13 GB of downloads beside its 21 GB; delete $C/benign-bulk/work/{wheels,npm} once it is built). SOURCES is the
# folder holding the fetched collections of ../shared/data/malware_v2_manifest.csv (`owner+repo/repo`
# snapshots or `git clone`s) and of the benign repositories scripts/benign_github*.csv name (`tail -qn+2
# scripts/benign_github*.csv | cut -d, -f3 | sort -u`: 1,044 of them); it is needed only while malware_v2 or a
# benign-github set is missing. MALVISION_CACHE moves everything (default ~/.cache/malvision).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${MALVISION_CACHE:-$HOME/.cache/malvision}  # the folder malvision itself reads (data/build.py cache_home)
SOURCES=${SOURCES:-}
mkdir -p "$C"
say() { echo "[corpora] $*" >&2; }
# have NAME [MANIFEST]: NAME is built. A builder that found files missing or changed writes its manifest
# anyway and lists them in missing.csv: such a corpus is not taken as built, it stops the run by name.
have() {
    [ -f "$C/$1/${2:-manifest_ext.csv}" ] || return 1
    local m="$C/$1/missing.csv" n
    if [ -f "$m" ] && n=$(($(wc -l < "$m") - 1)) && [ "$n" -gt 0 ]; then
        echo "error: $C/$1 is incomplete: $n file(s) missing or changed at their commit (the first: $(sed -n 2p "$m")); fix SOURCES, then delete $C/$1 to build it again" >&2
        exit 2
    fi
}
# every github_set call below, in its order (the check before the downloads covers them all)
GITHUB_SETS=(benign-github benign-github2 benign-github3 benign-github-heldout benign-github4 benign-github5
             benign-github-heldout2 benign-github6)
# Every repository a missing corpus is built from, and the archive tools, checked before hours of downloads
needed=()
have malware_v2 manifest.csv || needed+=(../shared/data/malware_v2_manifest.csv)
for set in "${GITHUB_SETS[@]}"; do have "$set" || needed+=("scripts/${set//-/_}.csv"); done
if [ ${#needed[@]} -gt 0 ]; then
    [ -n "$SOURCES" ] && [ -d "$SOURCES" ] || {
        echo "error: SOURCES (${SOURCES:-unset}) is not a folder; set it to the folder of the fetched repositories that ${needed[*]} name" >&2
        exit 1
    }
    .venv/bin/python scripts/build_github_benign.py --sources "$SOURCES" --check "${needed[@]}" || exit 1
fi
if ! have malware_v2 manifest.csv && ! { command -v 7z && command -v unrar-free; } > /dev/null; then
    echo "error: malware_v2 opens the collections' archives with 7z and unrar-free: apt-get install p7zip-full unrar-free" >&2
    exit 1
fi
# SET=win32 comes last and needs i386 as a dpkg architecture: say so now, not after an hour of downloads
if ! have benign-win32 && ! dpkg --print-foreign-architectures | grep -qx i386; then
    echo "error: benign-win32 fetches Debian's libwine:i386; run once, as root: dpkg --add-architecture i386 && apt-get update" >&2
    exit 2
fi

if [ ! -d "$C/big2015_opcodes" ]; then
    say "unpacking BIG2015 opcodes into $C/big2015_opcodes"
    tar -xJf ../shared/data/big2015_opcodes.tar.xz -C "$C/"
fi
# The shared script fetches ~180 .debs without a word for 10 to 20 minutes: count them every 30 s meanwhile.
watch_debs() {
    while sleep 30; do
        n=$(find "$C/benign/work/debs" -name '*.deb' 2>/dev/null | wc -l || true)
        say "benign: $n .deb packages fetched so far (of about 180)"
    done
}
if ! have benign; then
    say "building $C/benign (apt, PyPI, npm downloads)"
    watch_debs & watcher=$!
    trap 'kill $watcher 2>/dev/null' EXIT
    OUT="$C/benign" bash ../shared/tools/build_benign_corpus.sh
    kill $watcher 2>/dev/null || true
fi
have benign-extra || { say "building $C/benign-extra"; OUT="$C/benign-extra" BASE="$C/benign" bash scripts/build_extra_benign.sh; }
have benign-tools || { say "building $C/benign-tools"; SET=tools OUT="$C/benign-tools" BASE="$C/benign:$C/benign-extra" bash scripts/build_extra_benign.sh; }
have benign-gui || { say "building $C/benign-gui"; SET=gui OUT="$C/benign-gui" BASE="$C/benign:$C/benign-extra:$C/benign-tools" bash scripts/build_extra_benign.sh; }
# benign-heldout is a test set no model trains on (benchmarks/heldout_benign.py); it is built here because
# the widenings after it leave out its files (and its projects), so they need it first
have benign-heldout || { say "building $C/benign-heldout"; SET=heldout bash scripts/build_extra_benign.sh; }
have benign-calib || { say "building $C/benign-calib"; SET=calib bash scripts/build_extra_benign.sh; }
have benign-win32 || { say "building $C/benign-win32"; SET=win32 bash scripts/build_extra_benign.sh; }
have benign-tail || { say "building $C/benign-tail"; SET="tail" bash scripts/build_extra_benign.sh; }
if ! have malware_v2 manifest.csv; then
    [ -n "$SOURCES" ] || { echo "error: no $C/malware_v2; set SOURCES to the folder of the fetched collections" >&2; exit 1; }
    say "building $C/malware_v2 from $SOURCES"
    python3 ../shared/tools/build_malware_corpus.py --sources "$SOURCES" \
        --manifest ../shared/data/malware_v2_manifest.csv --out "$C/malware_v2"
fi
base=()
for b in benign benign-extra benign-tools benign-gui benign-calib benign-win32 benign-heldout; do base+=(--base "$C/$b"); done
# github_set NAME: $C/NAME from scripts/NAME.csv (dashes as underscores), leaving out the files of every corpus
# in base; then NAME joins base, so each set leaves out the files of the sets before it
github_set() {
    if ! have "$1"; then
        [ -n "$SOURCES" ] || { echo "error: no $C/$1; set SOURCES to the folder of the fetched repositories" >&2; exit 1; }
        say "building $C/$1 from $SOURCES"
        .venv/bin/python scripts/build_github_benign.py --sources "$SOURCES" --out "$C/$1" \
            --manifest "scripts/${1//-/_}.csv" "${base[@]}"
    fi
    base+=(--base "$C/$1")
}
for set in benign-github benign-github2 benign-github3 benign-github-heldout benign-github4; do github_set $set; done
# the PyPI bulk widening comes last: it leaves out the files of every set above, the GitHub ones too
if ! have benign-bulk; then
    bulk_base=$C/benign-tail
    for b in "${base[@]}"; do [ "$b" = --base ] || bulk_base+=":$b"; done
    say "building $C/benign-bulk"
    SET=bulk BASE="$bulk_base" bash scripts/build_extra_benign.sh
fi
base+=(--base "$C/benign-bulk")
# the fifth GitHub set, found after the bulk set was built: it leaves out the files of every set above
github_set benign-github5
# a second held-out set of programs, never trained on (domain software and less common toolchains): after every
# set above, so it holds none of their files; a later training set must leave out its files and projects
github_set benign-github-heldout2
# the sixth GitHub set (2026-12-03: assembly, VB6/Delphi/BASIC, C/C++ hobby programs, utilities and plugins), found
# after the second held-out set: it leaves out the files, projects and file names of both held-out sets
github_set benign-github6
say "corpora ready in $C; next: .venv/bin/malvision reproduce default"
