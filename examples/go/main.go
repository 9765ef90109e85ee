// Command mxpuppet-token fetches a Matrix access token from mxpuppetd over its Unix socket
// (standard library only: net/http with a Unix DialContext).
//
//	mxpuppet-token [-socket PATH] USER_ID               print USER_ID's access token
//	mxpuppet-token [-socket PATH] -invalidate USER_ID   read a token the homeserver rejected
//	                                                    with M_UNKNOWN_TOKEN from stdin,
//	                                                    report it; prints "true" if it was
//	                                                    the current one
//
// The socket defaults to $MXPUPPETD_SOCKET, else /run/mxpuppetd/mxpuppetd.sock.
// Exit codes: 0 success, 1 the daemon answered with an error (errcode on stderr), 2 usage,
// 3 the daemon cannot be reached (or its answer is not JSON). The token goes to stdout only,
// never to stderr.
//
// In a bridge, copy Client: when the homeserver answers a request with 401 M_UNKNOWN_TOKEN,
// call Invalidate(ctx, user, token), then Token(ctx, user) again.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const (
	defaultSocket  = "/run/mxpuppetd/mxpuppetd.sock"
	maxTries       = 5                // give up after this many answers of 429/503
	defaultRetry   = time.Second      // a 503 without retry_after_ms: wait this long
	maxWait        = time.Minute      // never wait longer than this between two tries
	requestTimeout = 35 * time.Second // the daemon answers within listen.request_timeout (30 s)
)

// Client talks to mxpuppetd. Its http.Client keeps connections alive between requests.
type Client struct {
	http *http.Client
}

// NewClient dials the Unix socket for every request, whatever host the URL names.
func NewClient(socketPath string) *Client {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
	}
	return &Client{http: &http.Client{Transport: transport, Timeout: requestTimeout}}
}

// Error is the daemon's Matrix-style error answer {"errcode","error"}.
type Error struct {
	Status       int    `json:"-"`
	Errcode      string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMs *int64 `json:"retry_after_ms"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Errcode, e.Message) }

// userURL: the user ID is one path segment; url.PathEscape encodes '/', '?', '#' and '%'.
func userURL(userID, action string) string {
	return "http://mxpuppetd/v1/users/" + url.PathEscape(userID) + "/" + action
}

// do sends one request, retried on 429 and 503 after retry_after_ms, and decodes the 200
// answer into out.
func (c *Client) do(ctx context.Context, method, target string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := c.http.Do(req)
		if err != nil {
			return err
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		if res.StatusCode == http.StatusOK {
			return json.Unmarshal(raw, out)
		}
		apiErr := &Error{Status: res.StatusCode}
		if err := json.Unmarshal(raw, apiErr); err != nil {
			return fmt.Errorf("status %d with a body that is not JSON: %w", res.StatusCode, err)
		}
		// 429 M_LIMIT_EXCEEDED always says how long to wait; 503 MXP_UNAVAILABLE may.
		retryable := res.StatusCode == http.StatusTooManyRequests ||
			res.StatusCode == http.StatusServiceUnavailable
		if !retryable || attempt >= maxTries {
			return apiErr
		}
		wait := defaultRetry
		if apiErr.RetryAfterMs != nil {
			wait = time.Duration(*apiErr.RetryAfterMs) * time.Millisecond
		}
		if wait > maxWait {
			wait = maxWait
		}
		fmt.Fprintf(os.Stderr, "mxpuppetd: %d %s, retrying in %d ms\n",
			res.StatusCode, apiErr.Errcode, wait.Milliseconds())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Token returns the user's access token, logging in if the daemon has none.
func (c *Client) Token(ctx context.Context, userID string) (string, error) {
	var answer struct {
		AccessToken string `json:"access_token"`
	}
	err := c.do(ctx, http.MethodGet, userURL(userID, "token"), nil, &answer)
	return answer.AccessToken, err
}

// Invalidate reports a token the homeserver rejected (M_UNKNOWN_TOKEN); true if it was the
// current one (the daemon logged it out and the next Token call logs in again).
func (c *Client) Invalidate(ctx context.Context, userID, token string) (bool, error) {
	var answer struct {
		Invalidated bool `json:"invalidated"`
	}
	body := map[string]string{"access_token": token}
	err := c.do(ctx, http.MethodPost, userURL(userID, "invalidate"), body, &answer)
	return answer.Invalidated, err
}

func main() {
	socket := os.Getenv("MXPUPPETD_SOCKET")
	if socket == "" {
		socket = defaultSocket
	}
	flag.StringVar(&socket, "socket", socket, "mxpuppetd's Unix socket")
	invalidate := flag.Bool("invalidate", false, "report the token read from stdin as rejected")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mxpuppet-token [-socket PATH] [-invalidate] USER_ID")
		os.Exit(2)
	}
	userID := flag.Arg(0)
	client := NewClient(socket)
	ctx := context.Background()

	var err error
	if !*invalidate {
		var token string
		if token, err = client.Token(ctx, userID); err == nil {
			fmt.Println(token)
		}
	} else {
		// stdin keeps the token out of `ps`.
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		var ok bool
		if ok, err = client.Invalidate(ctx, userID, strings.TrimSpace(line)); err == nil {
			fmt.Println(ok)
		}
	}
	var apiErr *Error
	switch {
	case err == nil:
	case errors.As(err, &apiErr):
		fmt.Fprintln(os.Stderr, "mxpuppetd:", apiErr)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "cannot reach mxpuppetd at %s: %v\n", socket, err)
		os.Exit(3)
	}
}
