# genrelab: `make demo` (synthetic set), `make test`, `make all` (real GTZAN from the hub).
# CONFIG picks the configuration: make all CONFIG=configs/mini.toml
CONFIG ?= genrelab.toml
CARGO ?= cargo
GENRELAB = $(CARGO) run --quiet --bin genrelab -- --config $(CONFIG)

.PHONY: all download features split status demo mini test bench parity build clean-work

all:
	$(GENRELAB) run

download features split:
	$(GENRELAB) run $@

status:
	$(GENRELAB) status

build:
	$(CARGO) build --bins

demo:
	@$(MAKE) --no-print-directory all CONFIG=configs/demo.toml
	@$(MAKE) --no-print-directory status CONFIG=configs/demo.toml
	$(CARGO) run --quiet --bin genrelab -- --config configs/demo.toml --quiet query \
	  "SELECT s.part, f.genre, COUNT(*) AS clips, ROUND(CAST(AVG(f.mean_db) AS DOUBLE), 2) AS mean_db FROM features f JOIN split s USING (track_id) GROUP BY s.part, f.genre ORDER BY s.part, f.genre"

mini:
	@$(MAKE) --no-print-directory all CONFIG=configs/mini.toml

test:
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

bench:
	python3 bench/features_bench.py

parity:
	python3 tests/parity/make_reference.py

clean-work:
	rm -rf work
