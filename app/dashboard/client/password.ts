/// <reference lib="dom" />
// Changing the operator's password (POST /api/auth/password {current, new}).
// Shown two ways: on its own, before anything else, when the account still
// has the one-time password from `operator add`; and as a dialog from the
// header at any time. Errors stay inline beside the form.
import { api, ApiFailure } from "./api.ts";
import { h } from "./dom.ts";
import { errorText } from "./state.ts";

/** The server's bounds (app/control/auth/routes.ts MIN_PASSWORD / MAX_PASSWORD). */
const MIN = 12;
const MAX = 1024;

export interface PasswordFormOptions {
  /** The one-time-password case: no way around it but signing out. */
  forced: boolean;
  onDone(): void;
  onCancel?(): void;
}

/** What is wrong with the entries before asking the server, or undefined. */
export function passwordProblem(current: string, next: string, confirm: string): string | undefined {
  if (current === "") return "Enter your current password.";
  if (next.length < MIN) return `The new password needs at least ${MIN} characters.`;
  if (next.length > MAX) return `The new password can have at most ${MAX} characters.`;
  if (next !== confirm) return "The two new passwords differ.";
  if (next === current) return "Choose a password different from the current one.";
  return undefined;
}

function serverProblem(e: unknown): string {
  if (e instanceof ApiFailure && e.code === "invalid_credentials") return "The current password is wrong.";
  if (e instanceof ApiFailure && (e.code === "weak_password" || e.code === "rate_limited")) return e.message;
  return `Could not change the password: ${errorText(e)}`;
}

export function passwordForm(o: PasswordFormOptions): HTMLFormElement {
  const field = (id: string, label: string, autocomplete: string) => {
    const input = h("input", { id, type: "password", autocomplete, required: true, maxlength: MAX });
    return { input, nodes: [h("label", { for: id }, label), input] };
  };
  const current = field("pw-current", o.forced ? "One-time password" : "Current password", "current-password");
  const next = field("pw-new", `New password (at least ${MIN} characters)`, "new-password");
  const confirm = field("pw-confirm", "New password again", "new-password");
  const err = h("p", { class: "login-error pw-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "pw-submit" }, o.forced ? "Set password and continue" : "Change password");
  const form = h(
    "form",
    {
      class: `login password${o.forced ? "" : " in-dialog"}`,
      id: "password-form",
      "aria-label": "Change password",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const problem = passwordProblem(current.input.value, next.input.value, confirm.input.value);
        err.textContent = problem ?? "";
        if (problem) return;
        submit.disabled = true;
        try {
          await api("/api/auth/password", { method: "POST", body: { current: current.input.value, new: next.input.value } });
          o.onDone();
        } catch (e) {
          err.textContent = serverProblem(e);
          submit.disabled = false;
          if (e instanceof ApiFailure && e.code === "invalid_credentials") current.input.select();
        }
      },
      onkeydown: (ev) => {
        if ((ev as KeyboardEvent).key === "Escape" && o.onCancel) o.onCancel();
      },
    },
    h("h1", {}, o.forced ? "Choose your password" : "Change password"),
    o.forced
      ? h("p", { class: "muted" }, "You signed in with a one-time password. Set your own before you go on; other sessions of this account end.")
      : h("p", { class: "muted" }, "Other sessions of this account end; this one stays signed in."),
    ...current.nodes,
    ...next.nodes,
    ...confirm.nodes,
    submit,
    o.onCancel ? h("button", { type: "button", class: "link", id: "pw-cancel", onclick: () => o.onCancel?.() }, "Cancel") : null,
    err,
  );
  window.setTimeout(() => current.input.focus(), 0);
  return form;
}
