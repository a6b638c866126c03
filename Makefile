# clawpatrol: the two commands a newcomer needs are `make run` and `make test`.
BUN := ./node_modules/.bin/bun
CONFIG ?= config/default.hcl

.PHONY: run test deps test-deps typecheck bench-https clean

# The stamp is the lockfile npm itself writes into node_modules at every
# install: a stamp of our own was deleted with node_modules by a plain `npm ci`,
# so the next `make run` ran `npm ci` again.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

## Run the gateway on the embedded default config (loopback only, state in ./.state/).
# The demo credential of config/default.hcl gets a value unless you set one.
# The client for this machine is built first, so /install.sh can serve it.
# DEMO_UPSTREAM: the offline demo's HTTPS echo server (config/default.hcl's
# endpoint "https" "demo"); empty to start none.
DEMO_UPSTREAM ?= 127.0.0.1:8443
run: deps host-client
	CLAWPATROL_SECRET_DEMO="$${CLAWPATROL_SECRET_DEMO:-demo-secret-injected-by-the-gateway}" \
	  $(BUN) app/main.ts all --config $(CONFIG) $(if $(DEMO_UPSTREAM),--demo-upstream $(DEMO_UPSTREAM))

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

.PHONY: bench-netstack
## iperf3 through our userspace WireGuard + TCP/IP stack, beside the kernel on the same veth path (root).
bench-netstack: deps
	bash test/bench/deps.sh
	$(BUN) test/bench/netstack.ts

.PHONY: bench-postgres
## pgbench -S (simple and prepared) directly, through pgbouncer, and through the gateway with a rule reading sql.tables (root).
bench-postgres: deps
	bash test/bench/deps.sh
	$(BUN) test/bench/postgres.ts

.PHONY: bench-ssh
## scp of 200 MB and 200 sequential `ssh host true`, directly and through the gateway's ssh endpoint, to a real sshd (root).
bench-ssh: deps
	bash test/bench/deps.sh
	$(BUN) test/bench/ssh.ts

.PHONY: soak
## Sustained load and bursts through the explicit proxy and through the WireGuard tunnel against a local
# nginx (root): errors by kind, p50/p99, RSS and heap every 10 s with the slope after warm-up, events
# counted against what nginx served. Sizes: SOAK_CONNECTIONS (200), SOAK_BURST, SOAK_SECONDS (120),
# SOAK_VIA (proxy,tunnel); e.g. SOAK_CONNECTIONS=1000 SOAK_SECONDS=600.
soak: deps
	bash test/bench/deps.sh
	$(BUN) test/bench/soak.ts

.PHONY: image test-image test-image-units

## The appliance VM image: dist/clawpatrol-appliance.raw and .qcow2 (root; see image/build.sh).
image: deps
	bash image/build.sh

## Boot the image under QEMU and check it from inside (builds it first if missing).
test-image: test-image-units
	@[ -f dist/clawpatrol-appliance.raw ] || $(MAKE) image
	bash test/image/boot-test.sh

## systemd-analyze verify and security on the unit files.
test-image-units:
	bash test/image/units.test.sh

.PHONY: client

## A signed update bundle for `clawpatrol-gateway update` (BUNDLE_KEY from `clawpatrol-gateway update keygen DIR`).
BUNDLE_KEY ?= update-keys/update.key
bundle: deps
	$(BUN) tools/make-bundle.ts --key $(BUNDLE_KEY)
.PHONY: bundle

## The device binary `clawpatrol`: dist/clawpatrol-linux-{x64,arm64} and their .sha256.
# bun build --compile embeds the Bun runtime (~104 MiB each). The TUN reader's
# worker is a second entrypoint. Cross-compiling fetches the target's runtime
# once into ~/.bun/install/cache.
CLIENT_ENTRY := client/main.ts app/net/tun/tun-worker.ts
client: deps
	@mkdir -p dist
	$(BUN) build --compile --minify --target=bun-linux-x64 $(CLIENT_ENTRY) --outfile dist/clawpatrol-linux-x64
	$(BUN) build --compile --minify --target=bun-linux-arm64 $(CLIENT_ENTRY) --outfile dist/clawpatrol-linux-arm64
	cd dist && for f in clawpatrol-linux-x64 clawpatrol-linux-arm64; do sha256sum $$f > $$f.sha256; done
	@ls -l dist/clawpatrol-linux-*

## The client for this machine only (what `make run` serves at /download/ and /install.sh).
HOST_ARCH := $(shell uname -m | sed -e 's/x86_64/x64/' -e 's/aarch64/arm64/')
HOST_CLIENT := dist/clawpatrol-linux-$(HOST_ARCH)
.PHONY: host-client
host-client: $(HOST_CLIENT)
$(HOST_CLIENT): node_modules/.package-lock.json $(shell find client app -name '*.ts' -not -name '*.test.ts' 2>/dev/null)
	@mkdir -p dist
	$(BUN) build --compile --minify --target=bun-linux-$(HOST_ARCH) $(CLIENT_ENTRY) --outfile $@
	cd dist && sha256sum clawpatrol-linux-$(HOST_ARCH) > clawpatrol-linux-$(HOST_ARCH).sha256

clean:
	rm -rf .state dist .test-tmp
