// Runs the README's Go verdict verifier, exactly as written, on the cases a test sends.
//
// tests/verdict.rs copies this file, a go.mod that points golang-jwt at Debian's copy (no module
// download), and the README block after `<!-- verifier:go -->` (as verdict/verdict.go) into a
// directory, and runs `go run .` there. Cases come as a JSON list on stdin ({name, token,
// jwks_url, body_b64?, binding_b64?}); the answer is a JSON list on stdout.
package main

import (
	"encoding/base64"
	"encoding/json"
	"os"

	"ozverdict/verdict"
)

type testCase struct {
	Name       string  `json:"name"`
	Token      string  `json:"token"`
	JwksURL    string  `json:"jwks_url"`
	BodyB64    *string `json:"body_b64"`
	BindingB64 *string `json:"binding_b64"`
}

func decode(s *string) []byte {
	if s == nil {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		panic(err)
	}
	return b
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := []map[string]interface{}{}
	for _, c := range cases {
		claims, err := verdict.VerifyVerdict(c.Token, decode(c.BodyB64), decode(c.BindingB64), c.JwksURL)
		if err != nil {
			results = append(results, map[string]interface{}{"name": c.Name, "ok": false, "error": err.Error()})
		} else {
			results = append(results, map[string]interface{}{"name": c.Name, "ok": true, "claims": claims})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		panic(err)
	}
}
