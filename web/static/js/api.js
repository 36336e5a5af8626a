// The control plane's HTTP API (docs/API.md), as the app uses it. Every
// failure is an APIError with the API's stable code and its sentence.

export class APIError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

async function call(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new APIError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // An empty or non-JSON answer.
  }
  if (!resp.ok) {
    const err = new APIError(resp.status, data?.code, data?.error);
    err.retryAfter = data?.retry_after_seconds ?? 0; // on a 429, the seconds to wait
    throw err;
  }
  return data;
}

const cache = new Map();
function once(path) {
  if (!cache.has(path)) cache.set(path, call('GET', path).catch((err) => { cache.delete(path); throw err; }));
  return cache.get(path);
}

const meetingPath = (id, rest = '') => `/api/meetings/${encodeURIComponent(id)}${rest}`;

export const api = {
  config: () => once('/api/config'),
  geo: () => once('/api/geo'),
  nodes: () => call('GET', '/api/nodes'),
  preview: (policy) => call('POST', '/api/policy/preview', policy),
  // create takes {title, policy, host_key, policy_statement, lobby}.
  create: (body) => call('POST', '/api/meetings', body),
  meeting: (id) => call('GET', meetingPath(id)),
  // join answers the join, or a lobby wait {code: 'lobby', ticket, wait_ns}.
  // With the host token, the host's own join passes its lock and lobby.
  join: (id, body, hostToken) => call('POST', meetingPath(id, '/join'), body, hostToken),
  routing: (id, token) => call('GET', meetingPath(id, '/routing'), undefined, token),
  setPolicy: (id, body, hostToken) => call('PUT', meetingPath(id, '/policy'), body, hostToken),
  settings: (id, body, hostToken) => call('PUT', meetingPath(id, '/settings'), body, hostToken),
  remove: (id, participant, body, hostToken) => call('DELETE', meetingPath(id, `/participants/${encodeURIComponent(participant)}`), body, hostToken),
  lobby: (id, hostToken) => call('GET', meetingPath(id, '/lobby'), undefined, hostToken),
  decide: (id, ticket, body, hostToken) => call('POST', meetingPath(id, `/lobby/${encodeURIComponent(ticket)}`), body, hostToken),
};

// refusalMessage turns a join refusal into a sentence for people.
export function refusalMessage(err) {
  switch (err.code) {
    case 'no_capacity_in_allowed_regions':
      return 'Every media server this meeting’s routing policy allows is full right now. The meeting is never moved to a server its policy rules out, so please try again in a few minutes, or ask the host to widen the policy.';
    case 'no_node_in_allowed_regions':
      return 'No media server is available in the countries this meeting’s routing policy allows. The meeting is never moved to a server its policy rules out; ask the host to widen the policy.';
    case 'not_found':
      return 'This meeting does not exist. Check the link.';
    case 'bad_meeting_secret':
      return 'This link is incomplete or wrong — ask the host for the whole link.';
    case 'meeting_locked':
      return 'The host locked this meeting: nobody new can join.';
    case 'lobby_denied':
      return 'The host did not let you in.';
    case 'lobby_expired':
      return 'You waited too long in the lobby, or the host ended it. Try again to ask once more.';
    case 'lobby_full':
      return 'The lobby of this meeting is full right now. Try again in a few minutes.';
    default:
      return err.message || 'The meeting could not be joined.';
  }
}
