// The running config from the dashboard (see ../config/editor.ts):
//   viewer  GET  /api/config           {root, version, files:[{path, text}], writable, canApply}; secrets as "<hidden N>"
//   admin   POST /api/config/validate  {files:[{path, text}]} → {ok:true, summary, warnings} | {ok:false, errors:[{file, line, message}]}
//   admin   POST /api/config/apply     {version, files} → {ok:true, version, changed, diff}
//                                      | 409 config_changed {version} | 422 config_rejected {errors, stage}
// Unsafe methods carry the CSRF token on a session, as every operator route.
// Validation and every apply (applied or not) land in the audit log with the
// operator and, for an apply, the files and their diff (secrets hidden).
import { ApiError, errorBody } from "../errors.ts";
import type { ConfigEditor, ConfigFile } from "../config/editor.ts";
import { caller, requireRole } from "../auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../auth/routes.ts";
import { noStoreJson, readJson, withErrors } from "../auth/http.ts";

const MAX_BODY = 2 * 1024 * 1024;
const MAX_ERRORS = 50;
/** The audit row keeps this much of the diff. */
const MAX_AUDIT_DIFF = 16 * 1024;

export type ConfigEditorOps = Pick<ConfigEditor, "view" | "validate" | "apply">;

function editorOf(deps: { config?: ConfigEditorOps }): ConfigEditorOps {
  if (!deps.config) throw new ApiError(404, "config_editor_off", "this gateway serves no config editor");
  return deps.config;
}

function filesOf(b: Record<string, unknown>): ConfigFile[] {
  const files = b.files;
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f?.path !== "string" || typeof f?.text !== "string")) {
    throw new ApiError(400, "bad_request", 'send {"files": [{"path": "…", "text": "…"}, …]}');
  }
  return files.map((f: { path: string; text: string }) => ({ path: f.path, text: f.text }));
}

export function configRoutes(ctx: AuthContext, deps: { config?: ConfigEditorOps }) {
  const viewer = requireRole(ctx.auth, "viewer");
  const admin = requireRole(ctx.auth, "admin");
  return withErrors()
    .get(
      "/api/config",
      async ({ request }) => {
        const v = await editorOf(deps).view();
        return noStoreJson({ ...v, canApply: caller(request).role === "admin" && v.writable });
      },
      { beforeHandle: viewer },
    )
    .post(
      "/api/config/validate",
      async ({ request, server }) => {
        const files = filesOf(await readJson(request, MAX_BODY));
        const r = await editorOf(deps).validate(files);
        audit(ctx, {
          operator: caller(request).operator,
          action: "config.validate",
          detail: { ok: r.ok, ...(r.ok ? {} : { errors: r.errors.length }) },
          source: sourceOf(ctx, request, server),
        });
        return r.ok ? r : { ok: false, errors: r.errors.slice(0, MAX_ERRORS) };
      },
      { parse: "none", beforeHandle: admin },
    )
    .post(
      "/api/config/apply",
      async ({ request, server }) => {
        const b = await readJson(request, MAX_BODY);
        if (typeof b.version !== "string") throw new ApiError(400, "bad_request", "version (from GET /api/config) is required");
        const files = filesOf(b);
        const who = caller(request);
        const r = await editorOf(deps).apply(files, b.version);
        const source = sourceOf(ctx, request, server);
        if (r.ok) {
          if (r.changed.length > 0) {
            audit(ctx, {
              operator: who.operator,
              action: "config.apply",
              detail: { ok: true, files: r.changed, diff: r.diff.length > MAX_AUDIT_DIFF ? `${r.diff.slice(0, MAX_AUDIT_DIFF)}\n… (diff cut)` : r.diff },
              source,
            });
          }
          return { ok: true, version: r.version, changed: r.changed, diff: r.diff };
        }
        if (r.stage === "conflict") {
          audit(ctx, { operator: who.operator, action: "config.apply", detail: { ok: false, stage: "conflict" }, source });
          return noStoreJson({ ...errorBody(new ApiError(409, "config_changed", "the config changed since it was loaded; reload it and edit again")), version: r.version }, 409);
        }
        audit(ctx, {
          operator: who.operator,
          action: "config.apply",
          detail: { ok: false, stage: r.stage, errors: r.errors.slice(0, 20).map((e) => `${e.file}:${e.line}: ${e.message}`) },
          source,
        });
        const message =
          r.stage === "reload"
            ? "the gateway rejected the config; the previous files are back and the last good policy stays"
            : r.stage === "write"
              ? "the config could not be written; nothing changed"
              : "the config has errors; nothing was written";
        return noStoreJson({ ...errorBody(new ApiError(422, "config_rejected", message)), stage: r.stage, errors: r.errors.slice(0, MAX_ERRORS) }, 422);
      },
      { parse: "none", beforeHandle: admin },
    );
}
