// What the centrifuge-go suite shares: real Herald servers started by the Python
// harness's node/tests/py/sdkcluster.py (ports, settings and clean-up are the pytest
// suite's), HS256 tokens, the server API, recorded SDK events and bounded waits.
package herald_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
)

// T is the default timeout of one wait (HERALD_TEST_TIMEOUT seconds, as in pytest).
var T = func() time.Duration {
	var s float64 = 10
	fmt.Sscan(os.Getenv("HERALD_TEST_TIMEOUT"), &s)
	return time.Duration(s * float64(time.Second))
}()

var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../.."))
}()

type nodeInfo struct {
	ID  string `json:"id"`
	WS  string `json:"ws"`
	API string `json:"api"`
}

// servers is what sdkcluster.py started, and the pipe to command it.
type servers struct {
	Mode   string     `json:"mode"`
	WS     string     `json:"ws"`
	API    string     `json:"api"`
	Secret string     `json:"secret"`
	APIKey string     `json:"api_key"`
	Nodes  []nodeInfo `json:"nodes"`

	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// protobuf: the suite's clients use the Protobuf encoding (NewProtobufClient).
	protobuf bool
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// startServers starts `single` or `cluster` and stops it when the test ends.
func startServers(t *testing.T, mode string) *servers {
	t.Helper()
	py := envOr("HERALD_PY", filepath.Join(repoRoot, "target/py-venv/bin/python"))
	cmd := exec.Command(py, filepath.Join(repoRoot, "node/tests/py/sdkcluster.py"), mode)
	cmd.Env = append(os.Environ(),
		"HERALD_NODE_BIN="+envOr("HERALD_NODE_BIN", filepath.Join(repoRoot, "target/debug/herald-node")),
		"HERALD_ROUTER_BIN="+envOr("HERALD_ROUTER_BIN", filepath.Join(repoRoot, "target/debug/herald-router")))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	s := &servers{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		stdin.Close() // end of input: the launcher stops every process
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * T):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := s.next(6 * T)
	must(t, err)
	must(t, json.Unmarshal([]byte(line), s))
	return s
}

func (s *servers) next(timeout time.Duration) (string, error) {
	select {
	case line, ok := <-s.lines:
		if !ok {
			return "", fmt.Errorf("launcher exited")
		}
		return line, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("launcher silent for %s", timeout)
	}
}

// command sends one command to the launcher and returns its answer.
func (s *servers) command(t *testing.T, cmd map[string]any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(cmd)
	_, err := s.stdin.Write(append(b, '\n'))
	must(t, err)
	line, err := s.next(6 * T)
	must(t, err)
	var out map[string]any
	must(t, json.Unmarshal([]byte(line), &out))
	if out["ok"] != true {
		t.Fatalf("%s: %v", b, out["error"])
	}
	return out
}

// -- tokens -----------------------------------------------------------------------------

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// jwt is an HS256 token with claims, expiring expIn from now (0: no exp).
func jwt(secret string, claims map[string]any, expIn time.Duration) string {
	if expIn != 0 {
		claims["exp"] = time.Now().Add(expIn).Unix()
	}
	unsigned := b64(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + b64(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (s *servers) token(user string, expIn time.Duration, extra map[string]any) string {
	claims := map[string]any{"sub": user}
	for k, v := range extra {
		claims[k] = v
	}
	return jwt(s.Secret, claims, expIn)
}

func (s *servers) subToken(user, channel string, expIn time.Duration) string {
	return jwt(s.Secret, map[string]any{"sub": user, "channel": channel}, expIn)
}

// -- server API -------------------------------------------------------------------------

// api posts to <base>/<method> (base: the servers' API unless given) and returns `result`.
func (s *servers) api(t *testing.T, method string, body any, base ...string) map[string]any {
	t.Helper()
	url := s.API
	if len(base) > 0 {
		url = base[0]
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+"/"+method, bytes.NewReader(b))
	req.Header.Set("X-API-Key", s.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: T}).Do(req)
	must(t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 || out["error"] != nil {
		t.Fatalf("api %s: %d %s", method, resp.StatusCode, raw)
	}
	res, _ := out["result"].(map[string]any)
	return res
}

// -- recorded events ----------------------------------------------------------------------

type event struct {
	kind string
	v    any
}

// rec records SDK callbacks; wait polls a condition over them.
type rec struct {
	mu     sync.Mutex
	events []event
}

func (r *rec) add(kind string, v any) {
	r.mu.Lock()
	r.events = append(r.events, event{kind, v})
	r.mu.Unlock()
}

func (r *rec) of(kind string) []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []any
	for _, e := range r.events {
		if e.kind == kind {
			out = append(out, e.v)
		}
	}
	return out
}

func (r *rec) count(kind string) int { return len(r.of(kind)) }

func (r *rec) wait(t *testing.T, what string, timeout time.Duration, pred func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !pred() {
		if time.Now().After(deadline) {
			r.mu.Lock()
			last := r.events
			if len(last) > 8 {
				last = last[len(last)-8:]
			}
			r.mu.Unlock()
			t.Fatalf("timed out after %s waiting for %s; last events %+v", timeout, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is an official centrifuge-go client (JSON, or Protobuf when the suite runs
// with s.protobuf) whose events go to its rec; it is closed when the test ends.
// Connect is left to the test.
func (s *servers) client(t *testing.T, url string, cfg centrifuge.Config) (*centrifuge.Client, *rec) {
	r := &rec{}
	var c *centrifuge.Client
	if s.protobuf {
		c = centrifuge.NewProtobufClient(url, cfg)
	} else {
		c = centrifuge.NewJsonClient(url, cfg)
	}
	watch(c, r)
	t.Cleanup(c.Close)
	return c, r
}

func watch(c *centrifuge.Client, r *rec) {
	c.OnConnecting(func(e centrifuge.ConnectingEvent) { r.add("connecting", e) })
	c.OnConnected(func(e centrifuge.ConnectedEvent) { r.add("connected", e) })
	c.OnDisconnected(func(e centrifuge.DisconnectedEvent) { r.add("disconnected", e) })
	c.OnError(func(e centrifuge.ErrorEvent) { r.add("error", e) })
	c.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) { r.add("subscribed", e) })
	c.OnUnsubscribed(func(e centrifuge.ServerUnsubscribedEvent) { r.add("unsubscribed", e) })
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) { r.add("publication", e) })
}

// connected is a client connected as user with a 1 h token unless cfg has one.
func (s *servers) connected(t *testing.T, user string, cfg centrifuge.Config, url ...string) (*centrifuge.Client, *rec) {
	t.Helper()
	if cfg.Token == "" && cfg.GetToken == nil {
		cfg.Token = s.token(user, time.Hour, nil)
	}
	u := s.WS
	if len(url) > 0 {
		u = url[0]
	}
	c, r := s.client(t, u, cfg)
	must(t, c.Connect())
	r.wait(t, "connected", T, func() bool { return r.count("connected") > 0 })
	return c, r
}

// subscribed is a subscription whose events go to its rec, subscribed.
func subscribed(t *testing.T, c *centrifuge.Client, channel string, cfg centrifuge.SubscriptionConfig) (*centrifuge.Subscription, *rec) {
	t.Helper()
	sub, err := c.NewSubscription(channel, cfg)
	must(t, err)
	r := &rec{}
	sub.OnSubscribing(func(e centrifuge.SubscribingEvent) { r.add("subscribing", e) })
	sub.OnSubscribed(func(e centrifuge.SubscribedEvent) { r.add("subscribed", e) })
	sub.OnUnsubscribed(func(e centrifuge.UnsubscribedEvent) { r.add("unsubscribed", e) })
	sub.OnPublication(func(e centrifuge.PublicationEvent) { r.add("publication", e) })
	sub.OnJoin(func(e centrifuge.JoinEvent) { r.add("join", e) })
	sub.OnLeave(func(e centrifuge.LeaveEvent) { r.add("leave", e) })
	sub.OnError(func(e centrifuge.SubscriptionErrorEvent) { r.add("error", e) })
	must(t, sub.Subscribe())
	r.wait(t, "subscribed to "+channel, T, func() bool { return r.count("subscribed") > 0 })
	return sub, r
}

func pubs(r *rec) []centrifuge.Publication {
	var out []centrifuge.Publication
	for _, v := range r.of("publication") {
		out = append(out, v.(centrifuge.PublicationEvent).Publication)
	}
	return out
}

var seq atomic.Int64

// unique is a channel or user name no other test uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
