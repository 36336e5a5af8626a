package natsauth

import (
	"github.com/nats-io/jwt/v2"

	"github.com/oakmeet/oakmeet/cluster"
)

// inboxRoot starts every reply subject. Each role gets its own branch under
// it, so no one can subscribe to the replies another receives (a JetStream
// read's answer is the data itself).
const inboxRoot = "_INBOX"

// ControlPermissions is the control plane's job: command any node, hear
// every node's heartbeats and events, and own the account's JetStream (the
// KV buckets, the audit stream, and the events stream it consumes through
// $JS.API and acks on $JS.ACK). Replicas of the control plane also hold
// the leader's lease (BucketLeader) and hand each other requests on
// SubjectForward, which no other identity may touch: the leader trusts
// what a forwarded request says of its client.
func ControlPermissions() jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			cluster.SubjectCommand("*"),
			cluster.AuditSubjectAll,
			"$JS.API.>",
			"$JS.FC.>",
			"$JS.ACK.>",
			"$KV." + cluster.BucketMeetings + ".>",
			"$KV." + cluster.BucketNodes + ".>",
			"$KV." + cluster.BucketControl + ".>",
			"$KV." + cluster.BucketLeader + ".>",
			cluster.SubjectForward,
			// The leader answers a forwarded request in parts, to the
			// forwarding replica's inbox.
			inboxRoot + ".control.>",
			// The leader answers a node's token key request in its inbox
			// (control/tokenkey.go checks the reply is there). Not
			// allow_responses: that would let it answer to any reply
			// subject a requester names, the very injection nodes are
			// kept from.
			cluster.NodeInboxRoot + ".>",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			cluster.SubjectHeartbeat("*"),
			cluster.SubjectEvents("*"),
			cluster.SubjectForward,
			cluster.SubjectTokenKey,
			inboxRoot + ".control.>",
		}},
	}
}

// NodePermissions is media node id's job and no more: report its own
// heartbeat and events, take its own commands, and ask the control plane
// for the token key (cluster.SubjectTokenKey). It has no JetStream rights
// at all, not even a read: JetStream answers to the reply subject a request
// names, with the account's rights, and NATS checks no reply subject
// against the requester's permissions, so a read's answer could be made to
// land in the audit log or any bucket's key.
func NodePermissions(id string) (jwt.Permissions, error) {
	if err := cluster.ValidNodeID(id); err != nil {
		return jwt.Permissions{}, err
	}
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			cluster.SubjectHeartbeat(id),
			cluster.SubjectEvents(id),
			cluster.SubjectTokenKey,
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			cluster.SubjectCommand(id),
			cluster.NodeInboxRoot + "." + id + ".>",
		}},
	}, nil
}
