// The password form's own checks, before anything is sent to the server.
import { describe, expect, test } from "bun:test";
import { passwordProblem } from "./password.ts";

describe("passwordProblem", () => {
  test.each([
    ["", "a-long-enough-password", "a-long-enough-password", "Enter your current password."],
    ["old", "short", "short", "The new password needs at least 12 characters."],
    ["old", "x".repeat(1025), "x".repeat(1025), "The new password can have at most 1024 characters."],
    ["old", "a-long-enough-password", "a-long-enough-passwort", "The two new passwords differ."],
    ["a-long-enough-password", "a-long-enough-password", "a-long-enough-password", "Choose a password different from the current one."],
  ])("current %p, new %p → %p", (current, next, confirm, want) => {
    expect(passwordProblem(current, next, confirm)).toBe(want);
  });

  test("a good change passes", () => {
    expect(passwordProblem("one-time-pw", "a-long-enough-password", "a-long-enough-password")).toBeUndefined();
  });
});
