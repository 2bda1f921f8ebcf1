// Package control speaks Layer 4.5's control interface (contract R16): it
// builds the ASCII requests, has them sent from inside a guest by l45ctl,
// and parses the JSON replies strictly, so a malformed reply is a test
// failure, not a silently empty report.
package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// Module is one entry of a report's Installed or Deprecated list.
type Module struct {
	ID        int   `json:"ID"`
	Activated int   `json:"Activated"`
	Count     int   `json:"Count"`
	TS        int64 `json:"ts"`
}

// Revoked is a module that has unregistered.
type Revoked struct {
	ID int   `json:"ID"`
	TS int64 `json:"ts"`
}

// Report is the reply to CUST_REPORT.
type Report struct {
	Installed  []Module  `json:"Installed"`
	Deprecated []Module  `json:"Deprecated"`
	Revoked    []Revoked `json:"Revoked"`
}

// Find returns the installed or deprecated entry with id.
func (r *Report) Find(id int) (m Module, deprecated, ok bool) {
	for _, m := range r.Installed {
		if m.ID == id {
			return m, false, true
		}
	}
	for _, m := range r.Deprecated {
		if m.ID == id {
			return m, true, true
		}
	}
	return Module{}, false, false
}

// Reply is the reply to every other request; which fields are set depends
// on the request.
type Reply struct {
	ID       *int   `json:"ID,omitempty"`
	Result   *int   `json:"Result,omitempty"`
	IV       string `json:"IV,omitempty"`
	Response string `json:"Response,omitempty"`
	Error    string `json:"ERROR,omitempty"`
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("Layer 4.5 reply is not the expected JSON (%v): %q", err, b)
	}
	if d.More() {
		return fmt.Errorf("Layer 4.5 reply has trailing data: %q", b)
	}
	return nil
}

// ParseReport parses a CUST_REPORT reply.
func ParseReport(b []byte) (*Report, error) {
	var r Report
	if err := decodeStrict(b, &r); err != nil {
		return nil, err
	}
	if r.Installed == nil || r.Deprecated == nil || r.Revoked == nil {
		return nil, fmt.Errorf("Layer 4.5 report lacks one of Installed, Deprecated, Revoked: %q", b)
	}
	return &r, nil
}

// ParseReply parses a reply to DEPRECATE, TOGGLE, PRIORITY or CHALLENGE, or
// an error reply.
func ParseReply(b []byte) (*Reply, error) {
	var r Reply
	if err := decodeStrict(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Requests, exactly as the contract spells them.
func ReportRequest() string                { return "CUST_REPORT" }
func DeprecateRequest(id int) string       { return "DEPRECATE " + strconv.Itoa(id) + " END" }
func PriorityRequest(id, prio int) string  { return fmt.Sprintf("PRIORITY %d %d END", id, prio) }
func ToggleRequest(id int, on bool) string { return fmt.Sprintf("TOGGLE %d %d END", id, b2i(on)) }
func ChallengeRequest(id int, iv, challenge []byte) string {
	return fmt.Sprintf("CHALLENGE %d %s %s END", id, hex.EncodeToString(iv), hex.EncodeToString(challenge))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Sender delivers one request from inside a guest and returns the reply
// payload. flags are l45ctl's (-raw, -nobody).
type Sender func(ctx context.Context, request string, flags ...string) ([]byte, error)

// Client sends requests through a Sender.
type Client struct{ Send Sender }

// Report asks for CUST_REPORT.
func (c Client) Report(ctx context.Context) (*Report, error) {
	b, err := c.Send(ctx, ReportRequest())
	if err != nil {
		return nil, err
	}
	return ParseReport(b)
}

// result sends a request whose reply is {"ID":n,"Result":0/1}.
func (c Client) result(ctx context.Context, id int, req string) (bool, error) {
	b, err := c.Send(ctx, req)
	if err != nil {
		return false, err
	}
	r, err := ParseReply(b)
	if err != nil {
		return false, err
	}
	if r.Error != "" {
		return false, fmt.Errorf("%s: Layer 4.5 says: %s", req, r.Error)
	}
	if r.ID == nil || *r.ID != id || r.Result == nil {
		return false, fmt.Errorf("%s: reply names another module or lacks a result: %q", req, b)
	}
	return *r.Result == 1, nil
}

// Deprecate deprecates module id; false means unknown or already deprecated.
func (c Client) Deprecate(ctx context.Context, id int) (bool, error) {
	return c.result(ctx, id, DeprecateRequest(id))
}

// Toggle activates or deactivates module id.
func (c Client) Toggle(ctx context.Context, id int, on bool) (bool, error) {
	return c.result(ctx, id, ToggleRequest(id, on))
}

// SetPriority changes module id's priority.
func (c Client) SetPriority(ctx context.Context, id, prio int) (bool, error) {
	return c.result(ctx, id, PriorityRequest(id, prio))
}

// Challenge calls module id's challenge function.
func (c Client) Challenge(ctx context.Context, id int, iv, challenge []byte) (*Reply, error) {
	b, err := c.Send(ctx, ChallengeRequest(id, iv, challenge))
	if err != nil {
		return nil, err
	}
	return ParseReply(b)
}
