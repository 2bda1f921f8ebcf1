// Package suites proves, end to end, the rules of the Layer 4.5 contract
// stated in CONTRACT.md at the top of the repository: real guests, real
// traffic, real dig and dnsmasq. A test names the rules it proves
// (TestR3_..., or a subtest "R3/..."), and `l45 e2e` turns the results into
// one verdict per rule.
//
// A subtest that is the regression test of a known deviation (CONTRACT.md
// §4) names it after its rules: "R4/D1-send-...". A subtest asserting one
// of this implementation's decisions where the contract is silent (§5)
// names the decision and no rule: "I24/...". The verdict lists both apart
// from the rules, and a decision never counts for a rule; so a check the
// contract does not make stays out of the rules' subtests.
package suites
