// One enrolled device on a userspace-WireGuard test gateway, for tests that
// run a real client program on the device (psql, clickhouse-client) against
// a real server on a host address. The test starts its servers between
// setUp() and start(), since the gateway's config names their ports.
//
//   [dev ns]   the compiled client, enrolled with `clawpatrol join`
//       ==veth (underlay)==
//   [root ns]  the gateway (userspace WireGuard on hostIp:wgPort); servers on upstream addresses
import { chmodSync } from "node:fs";
import type { Topology } from "./netns.ts";
import { startTestGateway, tempDir, type TestGateway } from "./gateway.ts";
import { addHostAddress, buildClient, deviceNamespace, enrollDevice, forwardPublicApi, killClients, runClient, type ClientOptions, type ClientResult } from "./client-device.ts";

export interface DeviceGatewayPlan {
  hostIp: string;
  devIp: string;
  /** Addresses of the root namespace the device reaches its servers on. */
  upstreamIps: string[];
  wgPort: number;
  /** The tunnel's subnet, unique per test file. */
  subnetCidr: string;
}

export class DeviceGateway {
  bin = "";
  dev = "";
  home = "";
  gw: TestGateway | undefined;
  private api: { url: string; close(): void } | undefined;

  constructor(
    private readonly topo: Topology,
    private readonly plan: DeviceGatewayPlan,
  ) {}

  /** The gateway under test (once start() has run). */
  get t(): TestGateway {
    if (!this.gw) throw new Error("the gateway has not started");
    return this.gw;
  }

  /** Builds the client; makes the device namespace and the upstream addresses. */
  setUp(): void {
    this.bin = buildClient();
    ({ dev: this.dev } = deviceNamespace(this.topo, this.plan.hostIp, this.plan.devIp));
    for (const ip of this.plan.upstreamIps) addHostAddress(this.topo, ip);
  }

  /** Starts the gateway with `config` (its endpoints, credentials, profiles, rules) and enrolls the device as `name` in `profile`. */
  async start(
    config: string,
    env: Record<string, string>,
    device: { name: string; profile: string; stderrWrite?: (line: string) => void },
  ): Promise<ClientResult> {
    const { hostIp, wgPort, subnetCidr } = this.plan;
    this.gw = await startTestGateway(config, env, {
      ...(device.stderrWrite ? { stderrWrite: device.stderrWrite } : {}),
      gateway: `
  wireguard {
    mode = "userspace"
    listen = "${hostIp}:${wgPort}"
    subnet_cidr = "${subnetCidr}"
    endpoint = "${hostIp}:${wgPort}"
  }`,
    });
    this.api = await forwardPublicApi(this.gw, hostIp);
    this.home = tempDir(`home-${device.name}`);
    chmodSync(this.home, 0o755);
    return enrollDevice(this.gw, this.bin, this.dev, this.api.url, device.name, { home: this.home, profile: device.profile });
  }

  /** Runs the client on the device, in its enrolled home. */
  run(args: string[], o: Omit<ClientOptions, "home"> = {}): Promise<ClientResult> {
    return runClient(this.bin, this.dev, args, { home: this.home, ...o });
  }

  /** For afterAll: the clients, the API forwarder and the gateway (the test stops its servers, then destroys the topology). */
  async stop(): Promise<void> {
    killClients();
    this.api?.close();
    await this.gw?.stop();
  }
}
