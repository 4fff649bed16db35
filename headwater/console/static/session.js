// The signed-in key: kept in sessionStorage (this tab, the whole console), with the scopes /console/whoami reports.
const STORAGE = "headwater.console.key";
const state = { key: sessionStorage.getItem(STORAGE) || "", scopes: [], keyId: "" };

export function takeKeyFromFragment() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (key) {
    setKey(key.trim());
    history.replaceState(history.state, "", location.pathname + location.search);
  }
}

export function setKey(key) { state.key = key; sessionStorage.setItem(STORAGE, key); }
export function key() { return state.key; }
export function signOut() { state.key = ""; state.scopes = []; sessionStorage.removeItem(STORAGE); }
export function setIdentity(keyId, scopes) { state.keyId = keyId; state.scopes = scopes; }
export function identity() { return { keyId: state.keyId, scopes: state.scopes }; }

// Whether the key may do what needs `scope` (admin holds every scope).
export function can(scope) { return state.scopes.includes("admin") || state.scopes.includes(scope); }
