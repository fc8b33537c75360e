#!/usr/bin/env bash
# The EMBER baseline's own environment: the EMBER v3 feature extractor (PyPI ember-cdd-wdis, on pefile)
# pins test and lint tools as run-time requirements, so it lives in a venv of its own, never in ours.
#
#   bash scripts/ember_env.sh            # ~/.cache/malvision/ember-venv (EMBER_VENV to choose); about 1 minute
#
# oscrypto 1.3.0 (under signify, for the Authenticode features) cannot read OpenSSL versions with a
# two-digit patch number (3.0.19: "Error detecting the version of libcrypto"); the fix is upstream
# (wbond/oscrypto commit 1547f53, not released) and is applied here, the same one-character change.
set -euo pipefail
VENV=${EMBER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/malvision/ember-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check ember-cdd-wdis==1.2.1 oscrypto==1.3.0
SITE=$("$VENV/bin/python" -c 'import oscrypto, os; print(os.path.dirname(oscrypto.__file__))')
sed -i 's/\\\\d\\\\.\\\\d\\\\.\\\\d\[a-z\]\*/\\\\d\\\\.\\\\d\\\\.\\\\d+[a-z]*/' "$SITE/_openssl/_libcrypto_ctypes.py" "$SITE/_openssl/_libcrypto_cffi.py"
"$VENV/bin/python" -c 'import ember; ember.PEFeatureExtractor()' || { echo "error: the EMBER extractor does not load in $VENV" >&2; exit 1; }
echo "EMBER extractor ready: $VENV/bin/python"
