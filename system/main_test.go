package system

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// oakmeetBinary builds cmd/oakmeet once, for the tests that run it as
// separate processes; they wait here for the build to finish. It is a
// package variable only to be started early by TestMain and read by those
// tests.
var oakmeetBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "oakmeet-system-test")
	if err != nil {
		return "", err
	}
	builtDir <- dir
	bin := filepath.Join(dir, "oakmeet")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/oakmeet/oakmeet/cmd/oakmeet")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build oakmeet: %v\n%s", err, out)
	}
	return bin, nil
})

// builtDir receives the directory oakmeetBinary made, once, so that
// TestMain removes it whichever test built it, and builds nothing to remove.
var builtDir = make(chan string, 1)

// TestMain starts building the binary at once when a test that runs it is
// selected, so that linking it overlaps the in-process tests instead of
// adding to the package's time, and removes it at the end.
func TestMain(m *testing.M) {
	flag.Parse()
	early := !testing.Short() && (selected("TestProcessesNodeLossDrainOverloadRestart") || selected("TestSoakChurnKeepsEveryFrameIntact"))
	if early {
		go func() { _, _ = oakmeetBinary() }()
	}
	code := m.Run()
	if early {
		_, _ = oakmeetBinary() // the build started above has finished
	}
	select {
	case dir := <-builtDir:
		_ = os.RemoveAll(dir)
	default:
	}
	os.Exit(code)
}

// selected says whether -test.run lets the top-level test name run.
func selected(name string) bool {
	run := flag.Lookup("test.run").Value.String()
	if run == "" {
		return true
	}
	top, _, _ := strings.Cut(run, "/")
	ok, err := regexp.MatchString(top, name)
	return err != nil || ok
}
