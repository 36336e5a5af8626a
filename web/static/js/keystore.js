// Non-extractable CryptoKeys kept in IndexedDB: the browser stores a
// CryptoKey as itself (structured clone), so a page can use a key it kept
// without ever being able to read it. One object store per database.

const STORE = 'keys';

export function openDB(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

// tx runs fn(store) in one transaction and resolves to its request's result.
export function tx(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const req = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(req.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}
