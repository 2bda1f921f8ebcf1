// Package suites proves, end to end, the rules of the Layer 4.5 contract
// stated in CONTRACT.md at the top of the repository: real guests, real
// traffic, real dig and dnsmasq. A test names the rules it proves
// (TestR3_..., or a subtest "R3/..."), and `l45 e2e` turns the results into
// one verdict per rule. "Contract section 4" in comments means CONTRACT.md
// §4, the known failures of the established implementation.
package suites
