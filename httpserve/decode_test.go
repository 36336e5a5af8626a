package httpserve_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/httpserve"
)

func TestDecodeJSON(t *testing.T) {
	type req struct {
		Name string `json:"name"`
	}
	for _, tc := range []struct {
		body   string
		status int // 0 = accepted
	}{
		{`{"name":"a"}`, 0},
		{"  {\"name\":\"a\"}\n\t ", 0},
		{`{"name":"a"} {"name":"b"}`, http.StatusBadRequest},
		{`{"name":"a"}x`, http.StatusBadRequest},
		{`{"name":"a"}]`, http.StatusBadRequest},
		{`{"nmae":"a"}`, http.StatusBadRequest},
		{`{"name":`, http.StatusBadRequest},
		{``, http.StatusBadRequest},
		{`{"name":"` + strings.Repeat("a", 200) + `"}`, http.StatusRequestEntityTooLarge},
		{`{"name":"a"}` + strings.Repeat(" ", 200), http.StatusRequestEntityTooLarge},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		var v req
		err := httpserve.DecodeJSON(httptest.NewRecorder(), r, &v, 100)
		if tc.status == 0 {
			if err != nil || v.Name != "a" {
				t.Errorf("%.30q: %v, %+v", tc.body, err, v)
			}
			continue
		}
		var be *httpserve.BodyError
		if !errors.As(err, &be) || be.Status != tc.status {
			t.Errorf("%.30q: %v, want status %d", tc.body, err, tc.status)
		}
	}
}
