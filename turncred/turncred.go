// Package turncred makes and checks the short-lived credentials for a media
// node's built-in TURN server. The control plane issues them with a join,
// for the one node the participant was placed on, so relayed traffic stays
// in that node's country; the node checks them with the secret it shares
// with the control plane. Pure functions, no I/O.
package turncred

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors a node branches on.
var (
	ErrMalformed = errors.New("turncred: malformed username")
	ErrExpired   = errors.New("turncred: expired")
)

// Issue returns a username ("<unix expiry>:<participant>") and password
// (base64 HMAC-SHA256 of the username under secret).
func Issue(secret []byte, participant string, expires time.Time) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + participant
	return username, Password(secret, username)
}

// Password is the password that goes with username under secret.
func Password(secret []byte, username string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Check validates a username's form and expiry at now and returns the
// participant it names; the TURN server then proves the password.
func Check(username string, now time.Time) (participant string, err error) {
	exp, participant, ok := strings.Cut(username, ":")
	if !ok || participant == "" {
		return "", ErrMalformed
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", ErrMalformed
	}
	if now.Unix() >= t {
		return "", ErrExpired
	}
	return participant, nil
}
