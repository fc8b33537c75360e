#!/usr/bin/env bash
# Every figure in README.md and docs/results.md comes from one of these commands, run in this order
# on a 2-core CPU machine with ../shared beside the repository. Sections can be run on their own.
# Caches and runs go to ~/.cache/malvision (never into the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
MV=.venv/bin/malvision
C=~/.cache/malvision
mkdir -p "$C/caches" "$C/runs"

data() {
    tar -xJf ../shared/data/big2015_opcodes.tar.xz -C "$C/"
    OUT="$C/benign" bash ../shared/tools/build_benign_corpus.sh          # needs `apt-get update` once
    $MV data build --opcodes "$C/big2015_opcodes" --out "$C/caches/big2015-opcodes-16k" --max-len 16384
    $MV data build --kind image --image-size 64 --out "$C/caches/pe_image64"
    $MV data build --kind bytes --max-len 1048576 --out "$C/caches/pe-bytes-1m"
}

# BIG2015 leaderboard: 6 architectures, stratified 5-fold. Two processes share the 2 cores, one model
# list each; the last call only collects the fold results both left in the same folder.
leaderboard() {
    local common=(--data "$C/caches/big2015-opcodes-16k" --out "$C/runs/big2015-leaderboard" --folds 5
        --epochs 6 --patience 3 --threads 1 --grouped no
        --set cnn.max_len=4096 --set cnn.epochs=8 --set malconv.max_len=4096 --set malconv.epochs=8
        --set malconv.window=12 --set malconv.stride=4 --set crnn.max_len=1024 --set crnn.hidden=64
        --set rnn.max_len=512 --set rnn.hidden=64 --set lstm.max_len=512 --set lstm.hidden=64
        --set gru.max_len=512 --set gru.hidden=64)
    $MV benchmark --models cnn,malconv,gru "${common[@]}" &
    $MV benchmark --models rnn,lstm,crnn "${common[@]}"
    wait
    $MV benchmark --models cnn,rnn,lstm,gru,crnn,malconv "${common[@]}"
}
