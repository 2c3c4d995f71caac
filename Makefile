# Lookalike: `make run` opens the app, `make test` runs the tests. Both create .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test results bench lock clean install-desktop uninstall-desktop

# Exact versions from requirements.lock (pyproject.toml only has compatible ranges), so every
# `make` environment is the one the tests ran in.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only build of the locked
# torch/torchvision first (the default wheels bring ~4 GB of CUDA libraries a CPU-only machine
# never loads); the rest of the install then finds them satisfied.
TORCH_INDEX ?=
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --disable-pip-version-check -q --index-url $(TORCH_INDEX) \
		$$(grep -E '^(torch|torchvision)==' requirements.lock))
	$(PY) -m pip install --disable-pip-version-check -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Re-pin after changing pyproject.toml's dependencies: install what its ranges allow (without
# the old pins), then write the installed versions of everything the project needs.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(PY) .ci/lock_requirements.py > requirements.lock.new && mv requirements.lock.new requirements.lock

# The check names the system library Qt's xcb plugin lacks (Qt's own message blames
# xcb-cursor0 whatever is missing) and the apt-get line that installs it.
run: $(STAMP)
	$(PY) -m gui.qt_check
	$(PY) main.py gui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# `make results` regenerates docs/RESULTS.md (rows in docs/results_rows.json) and the measured
# numbers the app's method list shows (engine/descriptors/methods/measured.json). First what a new collection
# uses (`eval` with no --method/--rerank: the default method and re-ranking), then every method
# as itself (no re-ranking, the baseline the re-ranked rows are read against), on the strict landmark sets (query cropped to its box and whole photo) and the two small sets.
# Not part of CI: on the 2-core CPU machine it takes roughly 10-20 hours (oxford_dev, 1008
# photos at 1024 px, is 20-60 min per method; paris_dev about a quarter of that; the small sets
# minutes). Indexing is cached per dataset, method and config (engine/evaluation/runner.py), so
# a second run only re-scores; the key has no code version: after changing how a method
# describes photos, delete its catalogs under the eval cache before `make results`.
DATASETS ?= ../shared/datasets
RESULTS_ARGS := --query-crop image --query-crop none --results-md docs/RESULTS.md \
	--measured engine/descriptors/methods/measured.json
results: $(STAMP)
	nice -n 10 $(PY) main.py eval $(DATASETS)/oxford_dev $(DATASETS)/paris_dev $(DATASETS)/ukbench56 \
		$(DATASETS)/holidays_samples $(RESULTS_ARGS)
	nice -n 10 $(PY) main.py eval --all --datasets-root $(DATASETS) --rerank none $(RESULTS_ARGS)

bench: $(STAMP)
	$(PY) -m bench

# The desktop menu entry, AppStream metainfo and icon, for this user (freedesktop paths). The
# entry runs this checkout's .venv/bin/lookalike-gui, so `make run` must have set it up.
DATA_HOME ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)
APP_ID := io.github.lookalike.Lookalike
install-desktop: $(STAMP)
	install -d "$(DATA_HOME)/applications" "$(DATA_HOME)/metainfo" "$(DATA_HOME)/icons/hicolor/scalable/apps"
	sed -e 's|@EXEC@|"$(abspath $(VENV))/bin/lookalike-gui"|' -e 's|@TRYEXEC@|$(abspath $(VENV))/bin/lookalike-gui|' \
		resources/desktop/$(APP_ID).desktop.in \
		> "$(DATA_HOME)/applications/$(APP_ID).desktop"
	install -m 644 resources/desktop/$(APP_ID).metainfo.xml "$(DATA_HOME)/metainfo/"
	install -m 644 resources/lookalike.svg "$(DATA_HOME)/icons/hicolor/scalable/apps/$(APP_ID).svg"
	-update-desktop-database -q "$(DATA_HOME)/applications" 2>/dev/null
	@echo "Lookalike is in the desktop menu ($(DATA_HOME)/applications/$(APP_ID).desktop)"

uninstall-desktop:
	rm -f "$(DATA_HOME)/applications/$(APP_ID).desktop" "$(DATA_HOME)/metainfo/$(APP_ID).metainfo.xml" \
		"$(DATA_HOME)/icons/hicolor/scalable/apps/$(APP_ID).svg"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
