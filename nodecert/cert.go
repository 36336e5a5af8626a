package nodecert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
)

// MaxClockSkew is how far ahead of a verifier's clock a certificate's
// not-before may be: an enrolled node is started at once, possibly where the
// clock runs a little behind the enrollment authority's. It is not added to
// not-after: expiry is enforced by whoever checks against their own clock,
// and stretching it would only delay failing closed.
const MaxClockSkew = 5 * time.Minute

// Times in statements are Unix seconds in [minUnix, maxUnix]: after the
// epoch, and no later than 9999-12-31T23:59:59Z, far inside the integers a
// JavaScript number holds exactly.
const (
	minUnix = 1
	maxUnix = 253402300799
)

// serialBytes is the size of a serial number: random, so that two
// authorities' or two runs' serials never collide.
const serialBytes = 16

// Cert is what a node certificate says. Times are kept to the second.
type Cert struct {
	Serial      string            // 32 lower-case hex digits (NewSerial)
	NodeID      string            // cluster.ValidNodeID
	Country     string            // ISO 3166-1 alpha-2, upper-case, in geo
	Region      string            // "" or a geo region of Country
	IdentityKey ed25519.PublicKey // the node's own identity key
	NotBefore   time.Time
	NotAfter    time.Time
	// EnrollmentKeyID is KeyID of the key that signed the certificate;
	// Issue fills it in.
	EnrollmentKeyID string
}

// certWire is the payload; its field order is the keys' lexicographic
// order, which makes json.Marshal's output the canonical form.
type certWire struct {
	Country       string `json:"country"`
	EnrollmentKey string `json:"enrollment_key"`
	IdentityKey   string `json:"identity_key"`
	Node          string `json:"node"`
	NotAfter      int64  `json:"not_after"`
	NotBefore     int64  `json:"not_before"`
	Region        string `json:"region"`
	Serial        string `json:"serial"`
}

// NewSerial returns a fresh random certificate serial.
func NewSerial() (string, error) {
	var b [serialBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("nodecert: read random bytes: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Issue signs c with the enrollment key and returns the certificate's text.
// The country is taken upper-case and the region as the geo catalogue spells
// it; times are rounded down to the second. EnrollmentKeyID is set from key
// (a different non-empty value is an error). Every rule Parse checks holds
// for what Issue returns.
func Issue(key ed25519.PrivateKey, c Cert) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("nodecert: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	kid := KeyID(key.Public().(ed25519.PublicKey))
	if c.EnrollmentKeyID != "" && c.EnrollmentKeyID != kid {
		return nil, fmt.Errorf("nodecert: certificate names enrollment key %s, signing key is %s", c.EnrollmentKeyID, kid)
	}
	c.EnrollmentKeyID = kid
	c.Country = geo.NormalizeCode(c.Country)
	if r, ok := geo.LookupRegion(c.Region); ok {
		c.Region = r.ID
	}
	w := toWire(c)
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("nodecert: invalid certificate: %w", err)
	}
	return seal(key, certTag, w)
}

// Parse reads a certificate's text and checks its syntax and every field's
// rule, but not its signature or validity window: use Verify for that.
// Errors wrap ErrMalformed.
func Parse(data []byte) (Cert, error) {
	c, _, err := parse(data)
	return c, err
}

func parse(data []byte) (Cert, envelope, error) {
	var w certWire
	env, err := open(certTag, data, maxCertLen, &w)
	if err != nil {
		return Cert{}, envelope{}, err
	}
	if err := w.validate(); err != nil {
		return Cert{}, envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return w.cert(), env, nil
}

// Verify checks that data is a certificate signed by the enrollment key pub
// and valid at now, and returns what it says. Errors wrap ErrMalformed,
// ErrWrongKey, ErrBadSignature, ErrNotYetValid or ErrExpired. Revocation is
// checked separately (Status), against the revocation list held.
func Verify(pub ed25519.PublicKey, data []byte, now time.Time) (Cert, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Cert{}, fmt.Errorf("nodecert: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	c, env, err := parse(data)
	if err != nil {
		return Cert{}, err
	}
	if want := KeyID(pub); c.EnrollmentKeyID != want {
		return Cert{}, fmt.Errorf("%w: certificate names %s, expected %s", ErrWrongKey, c.EnrollmentKeyID, want)
	}
	if err := env.verify(pub); err != nil {
		return Cert{}, err
	}
	if err := c.checkTime(now); err != nil {
		return Cert{}, err
	}
	return c, nil
}

// checkTime reports whether now is inside c's validity window.
func (c Cert) checkTime(now time.Time) error {
	switch c.timeState(now) {
	case NotYetValid:
		return fmt.Errorf("%w: valid from %s, now %s", ErrNotYetValid, c.NotBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case Expired:
		return fmt.Errorf("%w: valid until %s, now %s", ErrExpired, c.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Matches checks a node's claimed registration against its certificate and
// names the first field that differs, in the order node, country, region,
// identity key, as a *MismatchError. Values are compared exactly: the
// certificate holds the canonical spellings and so must the registration.
func Matches(c Cert, id, country, region string, identityKey []byte) error {
	switch {
	case id != c.NodeID:
		return &MismatchError{Field: "node", Cert: c.NodeID, Claimed: id}
	case country != c.Country:
		return &MismatchError{Field: "country", Cert: c.Country, Claimed: country}
	case region != c.Region:
		return &MismatchError{Field: "region", Cert: c.Region, Claimed: region}
	case !bytes.Equal(identityKey, c.IdentityKey):
		return &MismatchError{Field: "identity_key", Cert: KeyID(c.IdentityKey), Claimed: KeyID(identityKey)}
	}
	return nil
}

func toWire(c Cert) certWire {
	return certWire{
		Country:       c.Country,
		EnrollmentKey: c.EnrollmentKeyID,
		IdentityKey:   b64.EncodeToString(c.IdentityKey),
		Node:          c.NodeID,
		NotAfter:      c.NotAfter.Unix(),
		NotBefore:     c.NotBefore.Unix(),
		Region:        c.Region,
		Serial:        c.Serial,
	}
}

func (w certWire) cert() Cert {
	key, _ := b64.DecodeString(w.IdentityKey) // validate has decoded it
	return Cert{
		Serial:          w.Serial,
		NodeID:          w.Node,
		Country:         w.Country,
		Region:          w.Region,
		IdentityKey:     ed25519.PublicKey(key),
		NotBefore:       time.Unix(w.NotBefore, 0).UTC(),
		NotAfter:        time.Unix(w.NotAfter, 0).UTC(),
		EnrollmentKeyID: w.EnrollmentKey,
	}
}

// validate holds for every certificate issued or accepted.
func (w certWire) validate() error {
	if err := cluster.ValidNodeID(w.Node); err != nil {
		return err
	}
	if err := validPlace(w.Country, w.Region); err != nil {
		return err
	}
	if key, err := decodePart([]byte(w.IdentityKey)); err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("identity key is not %d base64url bytes", ed25519.PublicKeySize)
	}
	if !validHex(w.Serial, serialBytes) {
		return fmt.Errorf("serial %q: want %d lower-case hex digits", w.Serial, 2*serialBytes)
	}
	if !validHex(w.EnrollmentKey, 16) {
		return fmt.Errorf("enrollment key id %q: want 32 lower-case hex digits", w.EnrollmentKey)
	}
	if err := validUnix("not_before", w.NotBefore); err != nil {
		return err
	}
	if err := validUnix("not_after", w.NotAfter); err != nil {
		return err
	}
	if w.NotAfter < w.NotBefore {
		return errors.New("not_after is before not_before")
	}
	return nil
}

// validPlace checks country and region against the geo catalogue, as the
// catalogue spells them.
func validPlace(country, region string) error {
	cc, ok := geo.LookupCountry(country)
	if !ok || cc.Code != country {
		return fmt.Errorf("country %q: not an upper-case ISO 3166-1 alpha-2 code", country)
	}
	if region == "" {
		return nil
	}
	r, ok := geo.LookupRegion(region)
	switch {
	case !ok || r.ID != region:
		return fmt.Errorf("region %q: not in the catalogue", region)
	case r.Country != country:
		return fmt.Errorf("region %q is in %s, not %s", region, r.Country, country)
	}
	return nil
}

// validHex reports whether s is exactly n bytes as lower-case hex.
func validHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func validUnix(name string, t int64) error {
	if t < minUnix || t > maxUnix {
		return fmt.Errorf("%s %d: out of range [%d, %d]", name, t, minUnix, maxUnix)
	}
	return nil
}
