package signal

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/hoststmt"
)

func TestDecodeRefusals(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code string
	}{
		{"not json", `{"v":1,`, CodeBadJSON},
		{"wrong field type", `{"v":1,"type":"chat","text":5}`, CodeBadJSON},
		{"missing version", `{"type":"chat","text":"hi"}`, CodeUnsupportedVersion},
		{"future version", `{"v":2,"type":"chat","text":"hi"}`, CodeUnsupportedVersion},
		{"unknown type", `{"v":1,"type":"teleport"}`, CodeUnknownType},
		{"empty type", `{"v":1}`, CodeUnknownType},
		{"join without token", `{"v":1,"type":"join"}`, CodeBadMessage},
		{"join without nonce", `{"v":1,"type":"join","token":"t"}`, CodeBadMessage},
		{"join with short nonce", `{"v":1,"type":"join","token":"t","nonce":"AAAA"}`, CodeBadMessage},
		{"join with short host key", `{"v":1,"type":"join","token":"t","nonce":"` + strings.Repeat("A", 43) + `=","host_key":"AAAA"}`, CodeBadMessage},
		{"join statement too large", `{"v":1,"type":"join","token":"t","nonce":"` + strings.Repeat("A", 43) + `=","statement":"` + strings.Repeat("a", hoststmt.MaxBytes) + `"}`, CodeTooLarge},
		{"join statement not json", `{"v":1,"type":"join","token":"t","nonce":"` + strings.Repeat("A", 43) + `=","statement":{"a":}}`, CodeBadJSON},
		{"offer without sdp", `{"v":1,"type":"offer"}`, CodeBadMessage},
		{"subscribe without layer", `{"v":1,"type":"subscribe","track_id":"t1"}`, CodeBadMessage},
		{"relay with null payload", `{"v":1,"type":"relay","payload":null}`, CodeBadMessage},
		{"error without code", `{"v":1,"type":"error"}`, CodeBadMessage},
		{"link without nonce", `{"v":1,"type":"link","token":"t"}`, CodeBadMessage},
		{"link with short nonce", `{"v":1,"type":"link","token":"t","nonce":"AAAA"}`, CodeBadMessage},
		{"link without token", `{"v":1,"type":"link","nonce":"` + strings.Repeat("A", 43) + `="}`, CodeBadMessage},
		{"link_challenge without sig", `{"v":1,"type":"link_challenge","nonce":"` + strings.Repeat("A", 43) + `="}`, CodeBadMessage},
		{"link_proof without sig", `{"v":1,"type":"link_proof"}`, CodeBadMessage},
		{"nonce not base64", `{"v":1,"type":"link_proof","sig":"!!"}`, CodeBadJSON},
		{"candidate without target", `{"v":1,"type":"candidate","candidate":{"candidate":"c"}}`, CodeBadMessage},
		{"too large", `{"v":1,"type":"chat","text":"` + strings.Repeat("a", MaxMessageBytes) + `"}`, CodeTooLarge},
		{"host without payload", `{"v":1,"type":"host"}`, CodeBadMessage},
		{"host with null payload", `{"v":1,"type":"host","payload":null}`, CodeBadMessage},
		{"offer with unknown source", `{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"webcam"}}`, CodeBadSources},
		{"offer with empty source mid", `{"v":1,"type":"offer","sdp":"v=0","sources":{"":"camera"}}`, CodeBadSources},
		{"offer with long source mid", `{"v":1,"type":"offer","sdp":"v=0","sources":{"` + strings.Repeat("m", MaxMidBytes+1) + `":"camera"}}`, CodeBadSources},
		{"offer with too many sources", `{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"camera","1":"camera","2":"camera","3":"camera","4":"camera","5":"camera","6":"camera","7":"camera","8":"camera"}}`, CodeBadSources},
		{"offer with two screens", `{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"screen","1":"screen"}}`, CodeBadSources},
		{"offer with two screen audios", `{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"screen_audio","1":"screen_audio"}}`, CodeBadSources},
		{"sources not strings", `{"v":1,"type":"offer","sdp":"v=0","sources":{"0":1}}`, CodeBadJSON},
		{"layers_wanted without track", `{"v":1,"type":"layers_wanted","layers":["low"]}`, CodeBadMessage},
		{"layers_wanted unknown layer", `{"v":1,"type":"layers_wanted","track_id":"t1","layers":["q"]}`, CodeBadMessage},
		{"layers_wanted off", `{"v":1,"type":"layers_wanted","track_id":"t1","layers":["off"]}`, CodeBadMessage},
		{"layers_wanted twice", `{"v":1,"type":"layers_wanted","track_id":"t1","layers":["high","high"]}`, CodeBadMessage},
		{"layers_wanted too many", `{"v":1,"type":"layers_wanted","track_id":"t1","layers":["low","medium","high","low"]}`, CodeBadMessage},
		{"layers_wanted not strings", `{"v":1,"type":"layers_wanted","track_id":"t1","layers":[0]}`, CodeBadJSON},
		{"host statement too large", `{"v":1,"type":"host","payload":"` + strings.Repeat("a", hoststmt.MaxBytes) + `"}`, CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Decode error = %v, want *Error", err)
			}
			if se.Code != tc.code {
				t.Fatalf("code = %q, want %q (%v)", se.Code, tc.code, err)
			}
			if !errors.Is(err, &Error{Code: tc.code}) {
				t.Fatalf("errors.Is does not match code %q", tc.code)
			}
		})
	}
}

func TestDecodeLimit(t *testing.T) {
	msg := `{"v":1,"type":"ping"}`
	if _, err := DecodeLimit([]byte(msg), len(msg)); err != nil {
		t.Fatalf("message at the limit refused: %v", err)
	}
	if _, err := DecodeLimit([]byte(msg), len(msg)-1); !errors.Is(err, &Error{Code: CodeTooLarge}) {
		t.Fatalf("message over the limit: err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	mid, idx := "0", uint16(0)
	msgs := []Message{
		{Type: TypeJoin, Token: "tok", Nonce: make([]byte, JoinNonceBytes), HostKey: make([]byte, 32), Statement: []byte(`{"v":1,"kind":"policy"}`)},
		{Type: TypeLink, Token: "r1.x.y", Nonce: make([]byte, LinkNonceBytes), Cert: "-----BEGIN OAKMEET NODE CERTIFICATE-----"},
		{Type: TypeWelcome, ID: "p1", Name: "Ann", Meeting: "m1", Since: 1764220800000,
			Participants: []Participant{{ID: "p2", Name: "Bo"}},
			Tracks:       []Track{{ID: "t1", Participant: "p2", Stream: "p2", Kind: KindVideo, Layers: []string{"q", "h", "f"}}},
			ICEServers:   []ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "u", Credential: "c"}}},
		{Type: TypeOffer, SDP: "v=0\r\n"},
		{Type: TypeOffer, SDP: "v=0\r\n", Sources: map[string]string{"0": SourceMicrophone, "1": SourceCamera, "2": SourceScreen, "3": SourceScreenAudio}},
		{Type: TypeTrackPublished, Track: &Track{ID: "t2", Participant: "p2", Kind: KindVideo, Source: SourceScreen}},
		{Type: TypeCandidate, Candidate: &Candidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", SDPMid: &mid, SDPMLineIndex: &idx}, Target: TargetSubscribe},
		{Type: TypeParticipantLeft, Participant: &Participant{ID: "p2"}},
		{Type: TypeTrackPublished, Track: &Track{ID: "t1", Participant: "p2", Kind: KindAudio}},
		{Type: TypeSubscribe, TrackID: "t1", Layer: LayerLow},
		{Type: TypeChat, Text: "<hi> & bye", From: "p1", Time: 1700000000000},
		{Type: TypeRelay, To: "p2", From: "p1", Payload: []byte(`{"k":"<b64>"}`)},
		{Type: TypeError, Code: CodeUnknownType, Message: "no"},
		{Type: TypeLeave, Reason: "moved"},
		{Type: TypeMove, Reason: "policy_changed"},
		{Type: TypeLeave, Reason: ReasonRemoved},
		{Type: TypeHost, Payload: []byte(`{"kind":"remove","seq":1764220800000,"participant":"p2","sig":"<b64>"}`)},
		{Type: TypeParticipantJoined, Participant: &Participant{ID: "p3", Name: "Cy", Since: 1764220800123}},
		{Type: TypeLink, Token: "r1.x.y", Nonce: make([]byte, LinkNonceBytes)},
		{Type: TypeLinkChallenge, Nonce: make([]byte, LinkNonceBytes), Sig: []byte{1, 2, 3}},
		{Type: TypeLinkProof, Sig: []byte{4}},
		{Type: TypeLinkReady},
		{Type: TypeAnswer, SDP: "v=0\r\n", Sig: []byte{5}},
		{Type: TypeLayersWanted, TrackID: "t1", Layers: []string{LayerHigh, LayerLow}},
		{Type: TypeLayersWanted, TrackID: "t1"},
	}
	for _, m := range msgs {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%s): %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s): %v", b, err)
		}
		m.V = Version
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, m)
		}
	}
}

func TestSourcesAtTheirLimits(t *testing.T) {
	sources := map[string]string{strings.Repeat("m", MaxMidBytes): SourceScreen}
	for i := range MaxSources - 1 {
		sources[string(rune('a'+i))] = SourceCamera
	}
	b, err := Encode(Message{Type: TypeOffer, SDP: "v=0", Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("%d sources with a %d-byte mid refused: %v", len(sources), MaxMidBytes, err)
	}
	if !reflect.DeepEqual(m.Sources, sources) {
		t.Fatalf("sources = %v, want %v", m.Sources, sources)
	}
	if DefaultSource(KindAudio) != SourceMicrophone || DefaultSource(KindVideo) != SourceCamera {
		t.Fatal("undeclared tracks do not default to microphone and camera")
	}
}

func TestRelayPayloadIsOpaque(t *testing.T) {
	in := `{"v":1,"type":"relay","to":"","payload":{"z":1,  "a":"<&>"}}`
	m, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"payload":{"z":1,"a":"<&>"}`) {
		t.Fatalf("payload was rewritten beyond compaction: %s", b)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"v":1,"type":"join","token":"x"}`,
		`{"v":1,"type":"welcome","id":"p","participants":[],"tracks":[{"id":"t","participant":"p","kind":"video","layers":[]}]}`,
		`{"v":1,"type":"relay","payload":"aGk="}`,
		`{"v":1,"type":"relay","payload":[1, 2 ,{"a":"\u003c"}]}`,
		`{"v":1,"type":"candidate","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0},"target":"publish"}`,
		`{"v":1,"type":"chat","text":"\ud800","time":-1}`,
		`{"v":1,"type":"subscribe","track_id":"t","layer":"low"}`,
		`{"v":1,"type":"layers_wanted","track_id":"t","layers":["low","high"]}`,
		`{"v":1,"type":"layers_wanted","track_id":"t","layers":[]}`,
		`{"v":1,"type":"layers_wanted","track_id":"t","layers":["low","low"]}`,
		`{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"microphone","1":"camera","2":"screen","3":"screen_audio"}}`,
		`{"v":1,"type":"track_published","track":{"id":"t","participant":"p","kind":"video","source":"screen"}}`,
		`{"v":1,"type":"offer","sdp":"v=0","sources":{}}`,
		`{"v":2}`,
		`{"v":1,"type":"move","reason":"policy"}`,
		`{"v":1,"type":"link","token":"r1.a.b","nonce":"` + strings.Repeat("A", 43) + `="}`,
		`{"v":1,"type":"link_proof","sig":"AQID","nonce":""}`,
		`{"v":1,"type":"participant_joined","participant":{"id":"p","since":17}}`,
		`{"v":1,"type":"host","payload":{"kind":"settings","seq":1,"locked":true}}`,
		`[]`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-encoded message refused: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip changed the message:\n first %+v\nsecond %+v\n wire %s", m, again, b)
		}
	})
}

func TestHostStatementAtTheLimit(t *testing.T) {
	// A JSON string of exactly hoststmt.MaxBytes: the quotes count.
	at := `{"v":1,"type":"host","payload":"` + strings.Repeat("a", hoststmt.MaxBytes-2) + `"}`
	m, err := Decode([]byte(at))
	if err != nil {
		t.Fatalf("statement of %d bytes refused: %v", hoststmt.MaxBytes, err)
	}
	if len(m.Payload) != hoststmt.MaxBytes {
		t.Fatalf("payload of %d bytes, want %d", len(m.Payload), hoststmt.MaxBytes)
	}
}

func TestRelayMessagesHaveTheirOwnLimit(t *testing.T) {
	// message builds an encoded message of kind exactly n bytes long.
	message := func(kind Type, n int) []byte {
		var b []byte
		switch kind {
		case TypeRelay:
			b, _ = Encode(Message{Type: TypeRelay, Payload: []byte(`""`)})
		case TypeChat:
			b, _ = Encode(Message{Type: TypeChat, Text: "x"})
		case TypeWelcome:
			b, _ = Encode(Message{Type: TypeWelcome, ID: "p", Name: "x"})
		}
		pad := strings.Repeat("a", n-len(b))
		out := strings.Replace(string(b), `"x"`, `"x`+pad+`"`, 1)
		if kind == TypeRelay {
			out = strings.Replace(string(b), `""`, `"`+pad+`"`, 1)
		}
		if len(out) != n {
			t.Fatalf("built a %s message of %d bytes, want %d", kind, len(out), n)
		}
		return []byte(out)
	}
	tests := []struct {
		name string
		data []byte
		code string // "" accepted
		text string // in the refusal
	}{
		{"relay at the relay limit", message(TypeRelay, MaxRelayBytes), "", ""},
		{"relay over the relay limit", message(TypeRelay, MaxRelayBytes+1), CodeTooLarge, "relay message of"},
		{"relay above the default limit", message(TypeRelay, MaxMessageBytes+1), "", ""},
		{"chat at the default limit", message(TypeChat, MaxMessageBytes), "", ""},
		{"chat over the default limit", message(TypeChat, MaxMessageBytes+1), CodeTooLarge, "only relay messages"},
		{"chat of a relay's size", message(TypeChat, MaxRelayBytes), CodeTooLarge, "only relay messages"},
		{"chat beyond both limits", message(TypeChat, MaxRelayBytes+1), CodeTooLarge, "chat message of"},
		// A welcome lists the whole meeting: 1,000 participants are over
		// 64 KiB.
		{"welcome above the default limit", message(TypeWelcome, 300<<10), "", ""},
		{"welcome over the relay limit", message(TypeWelcome, MaxRelayBytes+1), CodeTooLarge, "welcome message of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.data)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("%d bytes refused: %v", len(tc.data), err)
				}
				if !m.Type.large() && m.Type != TypeChat {
					t.Fatalf("decoded %+v", m)
				}
				return
			}
			if !errors.Is(err, &Error{Code: tc.code}) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("%d bytes: err = %v, want %s mentioning %q", len(tc.data), err, tc.code, tc.text)
			}
		})
	}
	// One limit for every kind, as before.
	if _, err := DecodeLimit(message(TypeRelay, MaxMessageBytes+1), MaxMessageBytes); !errors.Is(err, &Error{Code: CodeTooLarge}) {
		t.Fatalf("DecodeLimit let a relay over its limit through: %v", err)
	}
}
