# genrelab: `make demo` (synthetic set), `make test`, `make all` (real GTZAN from the hub).
# CONFIG picks the configuration: make all CONFIG=configs/mini.toml
# SET overrides keys of it for one run: make evaluate CONFIG=configs/mini.toml SET="evaluate.window_hop=64"
# (several separated by spaces, none inside one: SET='train.seeds=2 train.models=["linear","resnet"]')
CONFIG ?= genrelab.toml
SET ?=
CARGO ?= cargo
GENRELAB = $(CARGO) run --quiet --bin genrelab -- --config $(CONFIG) $(foreach s,$(SET),--set '$(s)')

.PHONY: all download features descriptors split train evaluate status results tune demo mini test lint bench parity build libtorch clean-work

all: build
	$(GENRELAB) run

download features descriptors split train evaluate: build
	$(GENRELAB) run $@

tune: build
	$(GENRELAB) tune

results: build
	$(GENRELAB) results

status: build
	$(GENRELAB) status

# libtorch for the training engine (tch): LIBTORCH, python3's torch 2.13.0, or the torch wheel
# from PyPI into .libtorch/ (527 MB to download, once). See tools/libtorch.sh.
libtorch:
	@tools/libtorch.sh

build: libtorch
	@if [ ! -x target/debug/genrelab ]; then echo "building genrelab: the first build compiles polars, arrow, parquet and the libtorch binding (about 15 - 40 minutes on 2 cores, depending on the machine; cargo shows each crate)"; fi
	@$(CARGO) build --bin genrelab

demo: build
	@$(MAKE) --no-print-directory all CONFIG=configs/demo.toml
	@$(MAKE) --no-print-directory status CONFIG=configs/demo.toml
	@$(CARGO) run --quiet --bin genrelab -- --config configs/demo.toml --quiet results

mini: build
	@$(MAKE) --no-print-directory all CONFIG=configs/mini.toml

test: libtorch
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

lint: libtorch
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: build
	$$(bench/venv.sh) bench/features_bench.py

parity:
	python3 tests/parity/make_reference.py

clean-work:
	rm -rf work
