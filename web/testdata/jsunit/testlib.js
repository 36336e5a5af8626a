// The browser unit tests' registry and assertions, shared by unit.js and
// groupsim.js; unit.js runs every registered test and publishes the
// results on window.__unit for TestJSUnit.

export const tests = [];

export function test(name, fn) {
  tests.push({ name, fn });
}

export function eq(got, want, what) {
  if (got !== want) throw new Error(`${what}: got ${got}, want ${want}`);
}

export async function throwsAsync(fn, what) {
  try {
    await fn();
  } catch {
    return;
  }
  throw new Error(`${what}: no error`);
}

// prng is xorshift32: the same seed gives the same run.
export function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

let notes = [];

// note records a figure the test measured, for TestJSUnit's log.
export function note(text) {
  notes.push(text);
}

export async function runAll() {
  const results = [];
  for (const { name, fn } of tests) {
    const start = performance.now();
    notes = [];
    try {
      await fn();
      results.push({ name, ok: true, ms: Math.round(performance.now() - start), notes });
    } catch (err) {
      results.push({ name, ok: false, error: String(err?.stack ?? err), notes });
    }
  }
  document.body.textContent = results.map((r) => `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}`).join('\n');
  return JSON.stringify(results);
}
