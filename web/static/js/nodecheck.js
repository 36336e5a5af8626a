// What this browser checks about a media node by itself, against the
// host-signed policy (hoststmt.js) and the node's enrollment certificate
// (nodecert.js), never against the control plane's word:
//
//   - before connecting: a host key the link names and a policy statement
//     it signed (else no_host_policy); the node's certificate signed by the
//     policy's enrollment key and valid now, for the node the join answer
//     names (else node_cert_invalid); the certified country and region
//     allowed by the host's rules (else node_not_allowed_by_policy);
//   - for everyone's node (their signed e2ee "node" message): the status
//     verified, not_allowed, invalid or unknown.

import { toWire, allows } from './hoststmt.js';
import { verifyCert } from './nodecert.js';

export const NO_HOST_POLICY = 'no_host_policy';
export const NODE_CERT_INVALID = 'node_cert_invalid';
export const NODE_NOT_ALLOWED = 'node_not_allowed_by_policy';
export const NODE_PROOF_INVALID = 'node_proof_invalid';

// Statuses of a participant's node as this browser checked it.
export const VERIFIED = 'verified';
export const NOT_ALLOWED = 'not_allowed';
export const INVALID = 'invalid';
export const UNKNOWN = 'unknown';

// NodeRefusal is this client refusing the node it was placed on.
export class NodeRefusal extends Error {
  constructor(code, message, node) {
    super(message);
    this.code = code;
    this.node = node ?? '';
  }
}

// hostPolicy is the host key and newest policy statement a HostView holds,
// or a NodeRefusal (no_host_policy) saying why there is none.
export function hostPolicy(host) {
  if (!host?.key) {
    return new NodeRefusal(NO_HOST_POLICY, `Your browser has no host key to check this meeting's routing against${host?.keyProblem ? `: ${host.keyProblem}` : '.'} It does not connect on the server's word alone; ask the host for the whole link.`);
  }
  if (!host.policy) {
    return new NodeRefusal(NO_HOST_POLICY, 'The server sent no routing policy signed by the host, so your browser cannot check where the meeting\'s media would go. It does not connect on the server\'s word alone.');
  }
  return { key: host.key, policy: host.policy, wire: toWire(host.policy) };
}

function place(cert) {
  return cert.region ? `${cert.country}, ${cert.region}` : cert.country;
}

// checkNode resolves to the verified certificate of the node a join
// answer names, or rejects with a NodeRefusal.
export async function checkNode(host, node, nowS = Date.now() / 1000) {
  const hp = hostPolicy(host);
  if (hp instanceof NodeRefusal) throw hp;
  const id = node?.id ?? '';
  let cert;
  try {
    cert = await verifyCert(node?.cert ?? '', hp.policy.enrollmentKey, nowS);
  } catch (err) {
    throw new NodeRefusal(NODE_CERT_INVALID, `The media server ${id} has no valid certificate from this deployment's enrollment authority (${err.message}).`, id);
  }
  if (cert.node !== id || cert.country !== node.country || cert.region !== (node.region ?? '')) {
    throw new NodeRefusal(NODE_CERT_INVALID, `The certificate the server handed out is for ${cert.node} in ${place(cert)}, not for the media server ${id} in ${node.country}${node.region ? `, ${node.region}` : ''} it placed you on.`, id);
  }
  if (!allows(hp.policy.rules, cert.country, cert.region)) {
    throw new NodeRefusal(NODE_NOT_ALLOWED, `The media server ${id} is in ${place(cert)}, which the host's routing policy does not allow: your browser refused it and sent no media there.`, id);
  }
  return cert;
}

// nodeStatus resolves to {status, cert?, error?} for a participant's node
// certificate text (or null: no node message yet) under the host policy.
export async function nodeStatus(certText, host, nowS = Date.now() / 1000) {
  if (!certText) return { status: UNKNOWN };
  const hp = hostPolicy(host);
  if (hp instanceof NodeRefusal) return { status: UNKNOWN, error: hp.message };
  let cert;
  try {
    cert = await verifyCert(certText, hp.policy.enrollmentKey, nowS);
  } catch (err) {
    return { status: INVALID, error: err.message };
  }
  return { status: allows(hp.policy.rules, cert.country, cert.region) ? VERIFIED : NOT_ALLOWED, cert };
}
