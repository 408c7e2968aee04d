// The admin API, as the console calls it: every request carries the token
// the person signed in with; a refusal comes back as the problem the API
// describes (application/problem+json), with the field that is wrong.

const KEY = "dripline.token";

/** The token of this tab (session storage: gone when the tab closes). */
export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(value) {
  sessionStorage.setItem(KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** What the API refused, and why. */
export class Problem extends Error {
  constructor(status, detail, field) {
    super(field ? `${field}: ${detail}` : detail);
    this.status = status;
    this.field = field;
  }
}

/** A request to the admin API; the parsed JSON answer. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new Problem(
      response.status,
      (data && (data.detail || data.title)) || `HTTP ${response.status}`,
      data && data.field,
    );
  }
  return data;
}
