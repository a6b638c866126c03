// The dashboard's routes in-process: the real bundle, its headers, and a
// failed build that the next request tries again.
import { describe, expect, test } from "bun:test";
import { buildDashboard, dashboardRoutes, type DashboardAssets } from "./routes.ts";
import { setLogWriter } from "../log.ts";

const get = (app: ReturnType<typeof dashboardRoutes>, path: string) => app.handle(new Request(`http://127.0.0.1${path}`));

describe("dashboardRoutes", () => {
  test("serves the shell, the bundle and the stylesheet with a strict CSP", async () => {
    const app = dashboardRoutes();
    for (const [path, type] of [["/", "text/html"], ["/index.html", "text/html"], ["/app.js", "text/javascript"], ["/app.css", "text/css"]] as const) {
      const res = await get(app, path);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toStartWith(type);
      expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    }
    const js = await (await get(app, "/app.js")).text();
    expect(js).toContain("/api/events/stream");
    expect(js).not.toContain("import "); // one self-contained bundle
    expect((await get(app, "/nope")).status).toBe(404);
  });

  test("a failed build answers 500, is logged, and the next request builds again", async () => {
    const lines: string[] = [];
    setLogWriter((line) => lines.push(line));
    try {
      let calls = 0;
      const good = await buildDashboard();
      const app = dashboardRoutes({
        build: async (): Promise<DashboardAssets> => {
          calls++;
          if (calls === 1) throw new Error("syntax error in main.ts");
          return good;
        },
      });
      expect((await get(app, "/")).status).toBe(500);
      expect(lines.join("\n")).toContain("syntax error in main.ts");
      expect((await get(app, "/")).status).toBe(200);
      expect(calls).toBe(2);
    } finally {
      setLogWriter(undefined);
    }
  });
});
