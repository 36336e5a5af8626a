package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/coder/websocket"
)

// bidiConn is a WebDriver BiDi session: JSON commands with ids over one
// WebSocket, their replies matched by id, and events handed to onEvent.
//
// Firefox speaks BiDi, not the Chrome DevTools Protocol, so chromedp cannot
// drive it. npm's puppeteer and playwright can, but would put Node and a
// package install into every test run; the few commands the tests need are
// a small client here, and the Firefox tests stay one `go test`.
type bidiConn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)

	mu      sync.Mutex
	next    int
	pending map[int]chan bidiMessage
	err     error // why the connection ended, once it has
	done    chan struct{}
}

// bidiMessage is any message the remote end sends: a command's success or
// error (id set), or an event (method set).
type bidiMessage struct {
	Type    string          `json:"type"`
	ID      int             `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// dialBiDi connects to url (ws://HOST:PORT/session) and starts a session.
func dialBiDi(ctx context.Context, url string, onEvent func(string, json.RawMessage)) (*bidiConn, error) {
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	// Screenshots come back as one base64 message of a few MB.
	ws.SetReadLimit(64 << 20)
	c := &bidiConn{ws: ws, onEvent: onEvent, pending: map[int]chan bidiMessage{}, done: make(chan struct{})}
	go c.read()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{"acceptInsecureCerts": true}}}
	if err := c.call(ctx, "session.new", caps, nil); err != nil {
		c.close()
		return nil, fmt.Errorf("session.new: %w", err)
	}
	return c, nil
}

func (c *bidiConn) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var m bidiMessage
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		if m.Type == "event" {
			if c.onEvent != nil {
				c.onEvent(m.Method, m.Params)
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends a command and decodes its result into result (unless nil).
func (c *bidiConn) call(ctx context.Context, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan bidiMessage, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("%s: connection ended: %w", method, err)
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := c.ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: connection ended", method)
		}
		if m.Type == "error" {
			return fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// close ends the session and the connection.
func (c *bidiConn) close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
}

// bidiRemoteValue is a script result as BiDi serialises it; the tests only
// need primitives (objects are passed as JSON strings, see evaluate).
type bidiRemoteValue struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// evaluate evaluates expression in browsingContext (awaiting a promise) and
// decodes its value into out. The page turns the value into JSON itself:
// JSON.stringify is what chromedp's Evaluate gives too, and it spares
// decoding BiDi's typed object serialisation.
func (c *bidiConn) evaluate(ctx context.Context, browsingContext, expression string, out any) error {
	var r struct {
		Type      string          `json:"type"`
		Result    bidiRemoteValue `json:"result"`
		Exception struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	params := map[string]any{
		"expression":   fmt.Sprintf("(async () => { const v = await (%s); return v === undefined ? undefined : JSON.stringify(v); })()", expression),
		"target":       map[string]any{"context": browsingContext},
		"awaitPromise": true,
	}
	if err := c.call(ctx, "script.evaluate", params, &r); err != nil {
		return err
	}
	switch {
	case r.Type == "exception":
		return fmt.Errorf("exception: %s", r.Exception.Text)
	case r.Result.Type == "undefined":
		return errors.New("the expression gave undefined")
	case r.Result.Type != "string":
		return fmt.Errorf("unexpected result type %q", r.Result.Type)
	}
	var text string
	if err := json.Unmarshal(r.Result.Value, &text); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal([]byte(text), out)
}
