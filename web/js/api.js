// The API client shared by every screen: JSON over fetch, same origin, with the session cookie.
//
// A 401 on any route but the login ones means the session ended: the screen registers what to do
// then with onUnauthorized() (show the login form), and the caller's promise rejects with
// Unauthorized so it can stop quietly.

/** Thrown (after the screen's handler ran) when the session has ended. */
export class Unauthorized extends Error {}

let unauthorized = () => {};

/** What to do when the session turns out to have ended (once per 401). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** JSON over fetch, same origin with the session cookie. Resolves {ok, status, data}. */
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 200) };
    }
  }
  if (res.status === 401 && path !== "/api/session" && path !== "/api/me") {
    unauthorized();
    throw new Unauthorized();
  }
  return { ok: res.ok, status: res.status, data };
}

export function errorText(result) {
  return (result && result.data && result.data.error) || `HTTP ${result ? result.status : "?"}`;
}
