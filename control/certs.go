package control

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/nodecert"
)

// A node is trusted for what its certificate says, not for what its
// heartbeat claims: the certificate must verify against the deployment's
// enrollment key, be inside its validity window and unrevoked, and name the
// id, country, region and identity key the node registers with. A node
// that fails any of it is kept in the registry (so it shows, with why) but
// placement, relays and TURN never see it as usable, and enforcement moves
// its participants off it as off a node the policy forbids.

// certifier checks node certificates. It belongs to the owner goroutine.
type certifier struct {
	key ed25519.PublicKey
	// revs is the newest revocation list held.
	revs nodecert.Revocations
}

// newCertifier holds the enrollment key and, if given, the revocation list
// in force at start.
func newCertifier(key ed25519.PublicKey, revocations []byte) (*certifier, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, errors.New("control: the enrollment public key (Ed25519) is required")
	}
	c := &certifier{key: key}
	if len(revocations) > 0 {
		if err := c.setRevocations(revocations); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// setRevocations takes a newer revocation list; an older one, or one not
// signed by the enrollment key, is refused and the held list kept.
func (c *certifier) setRevocations(data []byte) error {
	r, err := nodecert.VerifyRevocation(c.key, data, c.revs)
	if err != nil {
		return fmt.Errorf("control: revocation list: %w", err)
	}
	c.revs = r
	return nil
}

// certStatus is where a node's certificate stands. A stored value is never
// changed.
type certStatus struct {
	// text is the certificate checked and cert what it says, once its
	// signature verified (verified), so later checks need not verify it
	// again.
	text     string
	cert     nodecert.Cert
	verified bool
	// ok: the node is certified. Otherwise code says why in a word that
	// stays the same while the reason does (it decides when to audit) and
	// msg in a sentence.
	ok        bool
	code, msg string
}

// check decides where info's certificate stands at now; prev is the node's
// previous status, reused when the certificate is the same.
func (c *certifier) check(info cluster.NodeInfo, prev certStatus, now time.Time) certStatus {
	st := certStatus{text: info.Cert}
	if prev.verified && prev.text == info.Cert {
		st.cert, st.verified = prev.cert, true
	} else {
		if info.Cert == "" {
			return prev.keepMsg(st.fail("no_certificate", "the node presents no certificate"))
		}
		cert, err := nodecert.Verify(c.key, []byte(info.Cert), now)
		if err != nil {
			return prev.keepMsg(st.fail(verifyCode(err), err.Error()))
		}
		st.cert, st.verified = cert, true
	}
	if s := nodecert.Status(st.cert, c.revs, now); s != nodecert.Valid {
		return prev.keepMsg(st.fail(s.String(), fmt.Sprintf("certificate %s is %s", st.cert.Serial, s)))
	}
	if err := nodecert.Matches(st.cert, info.ID, info.Country, info.Region, info.IdentityKey); err != nil {
		code := "mismatch"
		var me *nodecert.MismatchError
		if errors.As(err, &me) {
			code = "mismatch_" + me.Field
		}
		return prev.keepMsg(st.fail(code, err.Error()))
	}
	st.ok = true
	return st
}

// recheck is check for a certificate already checked, as time passes or
// the revocation list changes.
func (c *certifier) recheck(prev certStatus, info cluster.NodeInfo, now time.Time) certStatus {
	if !prev.ok {
		return prev
	}
	return c.check(info, prev, now)
}

func (st certStatus) fail(code, msg string) certStatus {
	st.ok, st.code, st.msg = false, code, msg
	return st
}

// keepMsg keeps the sentence of a reason that has not changed, so that what
// the API shows does not change with every heartbeat (an expiry's message
// names the time of the check).
func (prev certStatus) keepMsg(st certStatus) certStatus {
	if !prev.ok && prev.code == st.code && prev.msg != "" {
		st.msg = prev.msg
	}
	return st
}

// verifyCode names the reason a certificate did not verify.
func verifyCode(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{
		{nodecert.ErrWrongKey, "wrong_enrollment_key"},
		{nodecert.ErrBadSignature, "bad_signature"},
		{nodecert.ErrExpired, nodecert.Expired.String()},
		{nodecert.ErrNotYetValid, nodecert.NotYetValid.String()},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "malformed"
}

// certChange is what a node's certificate status changing calls for: an
// audit entry when it stops being (or is never) certified, for each new
// reason once, and a log line either way.
func (o *owner) certChange(prev *nodeState, info cluster.NodeInfo, st certStatus) []action {
	switch {
	case st.ok && prev != nil && !prev.Cert.ok && prev.Cert.code != "":
		o.log.Info("node certified", "node", info.ID, "country", info.Country)
	case !st.ok && (prev == nil || prev.Cert.ok || prev.Cert.code != st.code):
		o.log.Warn("node not certified: nothing is placed or relayed there", "node", info.ID, "claims", info.Country, "why", st.msg)
		return []action{{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindNodeDown, Node: info.ID, NodeCountry: info.Country,
			Reason: "certificate refused (" + st.code + "): " + st.msg}}}
	}
	return nil
}

// recheckCerts checks every certified node's certificate again at now (the
// revocation list changed, or time passed) and returns what the changes
// call for.
func (o *owner) recheckCerts(now time.Time) []action {
	var acts []action
	for _, id := range o.nodes.ids() {
		n := o.nodes.nodes[id]
		st := o.certs.recheck(n.Cert, n.Info, now)
		if st.ok == n.Cert.ok {
			continue
		}
		acts = append(acts, o.certChange(n, n.Info, st)...)
		o.nodes.setCert(id, st)
	}
	return acts
}
