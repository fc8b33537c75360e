# Developer shortcuts. `make fuzz` is the long fuzz run (minutes); the normal suite runs each fuzz
# target briefly and deterministically.

PY ?= .venv/bin/python
FUZZ_EXAMPLES ?= 20000
PYTEST = $(PY) -m pytest -p no:cacheprovider

.PHONY: test test-fast hostile fuzz-short fuzz lint

test:  ## the whole suite, slow tests included (what CI runs)
	$(PYTEST) -m "slow or not slow"

test-fast:  ## the suite without tests marked slow (plain `pytest` does the same)
	$(PYTEST)

hostile:  ## bad, hostile and huge inputs, with the slow 4 GiB runs
	$(PYTEST) -m "slow or not slow" tests/test_hostile.py tests/test_hostile_limits.py tests/fuzz

fuzz-short:  ## every fuzz target, a few hundred examples each (seconds)
	$(PYTEST) tests/fuzz

fuzz:  ## every fuzz target, FUZZ_EXAMPLES random examples each (20000: tens of minutes)
	MALVISION_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTEST) tests/fuzz --hypothesis-show-statistics

lint:
	.venv/bin/ruff check src tests benchmarks scripts
