/// <reference lib="dom" />
// The sign-in form. A one-time password (from `operator add`) signs in, and
// the shell then asks for a new one before anything else (see password.ts).
import { api, ApiFailure } from "./api.ts";
import type { Me } from "./api.ts";
import { clear, h } from "./dom.ts";
import { errorText } from "./state.ts";

export type SignedIn = Me & { csrf: string; mustChangePassword?: boolean };

export function loginView(root: HTMLElement, onSignedIn: (me: SignedIn) => void, message?: string): void {
  const err = h("p", { class: "login-error", role: "alert" }, message ?? "");
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        err.textContent = "";
        try {
          const me = await api<SignedIn>("/api/auth/login", {
            method: "POST",
            body: { name: name.value, password: password.value },
            quiet401: true,
          });
          onSignedIn(me);
        } catch (e) {
          err.textContent = e instanceof ApiFailure && e.status === 401 ? "Wrong name or password." : errorText(e);
          submit.disabled = false;
          password.select();
        }
      },
    },
    h("h1", {}, "clawpatrol"),
    h("p", { class: "muted" }, "Operator sign-in"),
    h("label", { for: "login-name" }, "Name"),
    name,
    h("label", { for: "login-password" }, "Password"),
    password,
    submit,
    err,
  );
  clear(root, h("div", { class: "login-wrap" }, form));
  name.focus();
}
