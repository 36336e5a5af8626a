package sfu

import (
	"errors"
	"fmt"

	"github.com/pion/sdp/v3"
)

// checkOffer rejects offers that pion would only refuse after it had
// already moved the connection to have-remote-offer. pion cannot roll a
// remote offer back, so such an offer would wedge the publish connection;
// refusing it up front keeps bad input from costing the participant its
// session.
func checkOffer(raw string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return fmt.Errorf("parse sdp: %w", err)
	}
	if len(d.MediaDescriptions) == 0 {
		return errors.New("offer has no media sections")
	}
	session := func(key string) bool {
		_, ok := d.Attribute(key)
		return ok
	}
	for i, m := range d.MediaDescriptions {
		media := func(key string) bool {
			_, ok := m.Attribute(key)
			return ok
		}
		if !media("mid") {
			return fmt.Errorf("media section %d has no mid", i)
		}
		for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
			if !media(key) && !session(key) {
				return fmt.Errorf("media section %d has no %s", i, key)
			}
		}
	}
	return nil
}
