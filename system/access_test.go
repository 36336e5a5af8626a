package system

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The meeting's door with real bots on a real cluster: a wrong secret is
// refused; with the lobby on, a bot waits until the host admits it, and
// one the host denies ends with the reason; a locked meeting refuses the
// next bot, and the admitted one sees the host's settings.
func TestLobbyLockAndSecretWithBots(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithLobbyWait(500*time.Millisecond))
	m := hostedMeeting(t, c)
	ctx := context.Background()
	cfg := func(name string) bot.Config {
		return bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: m.fingerprint,
			Name: name, Country: "DE", LoopbackOnly: true, Linger: 200 * time.Millisecond}
	}
	refusedWith := func(err error, code string) bool {
		var ae *client.APIError
		return errors.As(err, &ae) && ae.Code == code
	}

	wrong := cfg("intruder")
	wrong.Secret = "not-the-secret"
	if _, err := bot.Run(ctx, wrong); !refusedWith(err, api.CodeBadMeetingSecret) {
		t.Fatalf("wrong secret: %v", err)
	}

	if _, err := m.host.SetSettings(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string, 4)
	lobbied := func(c bot.Config) bot.Config {
		name := c.Name
		c.OnLobby = func(api.LobbyWait) {
			select {
			case waiting <- name:
			default:
			}
		}
		return c
	}
	joined := make(chan string, 1)
	admitted := lobbied(cfg("guest"))
	admitted.Ready = func(pid string) { joined <- pid }
	var hostView atomic.Pointer[client.HostReport]
	admitted.OnHost = func(r client.HostReport) { hostView.Store(&r) }
	stopGuest := startBots(t, admitted)
	deniedDone := make(chan error, 1)
	go func() {
		_, err := bot.Run(ctx, lobbied(cfg("gatecrasher")))
		deniedDone <- err
	}()
	var lobby api.Lobby
	testcluster.WaitFor(t, 15*time.Second, "both bots in the lobby", func() bool {
		var err error
		lobby, err = m.host.Lobby(ctx)
		return err == nil && len(lobby.Waiting) == 2
	})
	select {
	case pid := <-joined:
		t.Fatalf("%s joined before the host decided", pid)
	default:
	}
	for _, e := range lobby.Waiting {
		var err error
		if e.Name == "guest" {
			err = m.host.Admit(ctx, e.Ticket, e.Name)
		} else {
			err = m.host.Deny(ctx, e.Ticket, e.Name)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-joined:
	case <-time.After(20 * time.Second):
		t.Fatal("the admitted bot did not join")
	}
	select {
	case err := <-deniedDone:
		if !refusedWith(err, api.CodeLobbyDenied) {
			t.Fatalf("denied bot: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the denied bot did not end")
	}

	if _, err := m.host.SetSettings(ctx, true, true); err != nil {
		t.Fatal(err)
	}
	if _, err := bot.Run(ctx, cfg("latecomer")); !refusedWith(err, api.CodeMeetingLocked) {
		t.Fatalf("locked meeting: %v", err)
	}
	// The guest takes the host's signed settings as they come.
	testcluster.WaitFor(t, 10*time.Second, "the guest holding the lock", func() bool {
		v := hostView.Load()
		return v != nil && v.Locked
	})
	rep := stopGuest()[0]
	if rep == nil || !rep.Host.KeyChecked || !rep.Host.Locked || !rep.Host.Lobby || rep.Host.Refused != 0 {
		t.Fatalf("the guest's view of the host: %+v", rep)
	}
}
