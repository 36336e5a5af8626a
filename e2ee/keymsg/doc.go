// Package keymsg defines the messages meeting members exchange to agree on
// media keys, their versioned JSON wire form, exactly which bytes are signed,
// and how an epoch secret is sealed to each member with HPKE.
//
// There are eight messages. An announcement binds a participant id and a
// display name to an identity key and a per-meeting HPKE key, signed by that
// identity key. An epoch message, signed by the leader, carries a roster of
// announcements and one HPKE-sealed copy of the new epoch secret per roster
// entry. An ack, signed by a member, tells the leader that the member holds
// an epoch (named by its digest) and has heard from everyone in its roster;
// a commit, signed by the leader, tells everyone that all members acked it
// and it may be used to send. A sync message tells a leader which epoch a
// member already holds, so that a leader who knew less catches up. A node
// message, signed by a member, names the certificate of the media node the
// member is on, so that every other member can check it against the
// host-signed routing policy. A checkpoint message, signed by a member,
// passes on a checkpoint of the deployment's transparency log the member
// holds, so that members find out, without the server's help, whether
// they were shown one log. A presence message, signed by a member, says
// whether its microphone and camera are on, its hand raised and its screen
// shared, numbered so that an older one cannot be replayed.
//
// Signatures cover a canonical binary encoding rebuilt from the decoded
// fields, never the JSON text, so any JSON encoder interoperates. The formats
// are specified byte for byte in docs/E2EE.md.
package keymsg
