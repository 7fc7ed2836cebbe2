# genrelab: `make demo` (synthetic set), `make test`, `make all` (real GTZAN from the hub).
# CONFIG picks the configuration: make all CONFIG=configs/mini.toml
# SET overrides keys of it for one run: make evaluate CONFIG=configs/mini.toml SET="evaluate.window_hop=64"
# (several separated by spaces, none inside one: SET='train.seeds=2 train.models=["linear","resnet"]')
CONFIG ?= genrelab.toml
SET ?=
CARGO ?= cargo
GENRELAB = $(CARGO) run --quiet --bin genrelab -- --config $(CONFIG) $(foreach s,$(SET),--set '$(s)')

.PHONY: all download features descriptors split train evaluate status results tune demo mini test lint bench parity build clean-work

all:
	$(GENRELAB) run

download features descriptors split train evaluate:
	$(GENRELAB) run $@

tune:
	$(GENRELAB) tune

results:
	$(GENRELAB) results

status:
	$(GENRELAB) status

build:
	$(CARGO) build --bins

demo:
	@$(MAKE) --no-print-directory all CONFIG=configs/demo.toml
	@$(MAKE) --no-print-directory status CONFIG=configs/demo.toml
	@$(CARGO) run --quiet --bin genrelab -- --config configs/demo.toml --quiet results

mini:
	@$(MAKE) --no-print-directory all CONFIG=configs/mini.toml

test:
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	python3 bench/features_bench.py

parity:
	python3 tests/parity/make_reference.py

clean-work:
	rm -rf work
