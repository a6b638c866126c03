# clawpatrol: the two commands a newcomer needs are `make run` and `make test`.
BUN := ./node_modules/.bin/bun
CONFIG ?= config/default.hcl

.PHONY: run test deps test-deps typecheck bench-https clean

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed

## Run the gateway on the embedded default config (loopback only, state in ./.state/).
# The demo credential of config/default.hcl gets a value unless you set one.
run: deps
	CLAWPATROL_SECRET_DEMO="$${CLAWPATROL_SECRET_DEMO:-demo-secret-injected-by-the-gateway}" \
	  $(BUN) app/main.ts all --config $(CONFIG)

## Install what the tests need, then run every suite.
test: deps test-deps
	bash test/run-all.sh

test-deps:
	bash test/deps.sh

typecheck: deps
	./node_modules/.bin/tsc --noEmit -p .

## Side-by-side HTTPS benchmark: direct, through clawpatrol, through mitmproxy.
bench-https: deps
	bash test/bench/deps.sh
	$(BUN) test/bench/https.ts

clean:
	rm -rf .state dist .test-tmp
