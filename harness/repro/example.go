package repro

// Example is the template l45 repro --example prints: every field, with
// what it means. As it stands it reports contract rule R4 broken (a send
// that the error module fails must fail with exactly its errno), which the
// deliberate fault kernel/faults/error-sign.patch does.
const Example = `# l45 repro file: a bug report that runs.
#
#   l45 repro FILE             boot a fresh server (10.0.0.20) and client
#                              (10.0.0.40) on one link, load Layer 4.5 and the
#                              modules below, run the steps, judge
#                              "reproduced", write one bundle (.tar.gz)
#   l45 repro --replay BUNDLE  the same again from the bundle alone
#
# Exit status: 1 reproduced, 0 not reproduced, 125 could not run or judge
# (bad file, tree that does not compile, kernel that cannot be had, module
# refused, program not in the guest image), so "git bisect run l45 repro
# FILE" works over a Layer 4.5 tree. Relative paths are relative to this
# file. Durations are written 500ms, 30s, 2m.

title: "R4: a send the error module fails must fail with EPERM"

# The kernel, as $L45_KERNEL takes it: debian[:SUITE[:SERIES]] or
# source:SERIES[:debug]. Default: debian:bookworm.
kernel: debian:bookworm

# The Layer 4.5 tree to build and load, laid out like kernel/ (as
# $L45_TREE). Default: the project's kernel/.
# tree: ../my-layer45

# vCPUs per guest (1 to 8). Default 1.
cpus: 1

# Per guest: customization modules of the tree's customizations/ loaded in
# order after Layer 4.5's core, with their parameters (all modules take
# task_tgid, task_pid, protocol, dest_ip, dest_port, source_ip,
# source_port, id, priority, activate, apply_now, on_send, on_recv; see
# kernel/customizations), and host files copied in before the steps.
client:
  modules:
    - name: error
      params: {errno: "-1", on_recv: "0", task_tgid: l45net, protocol: "6", dest_port: "7112"}
  # files:
  #   - from: payload.bin          # host file
  #     to: /tmp/payload.bin       # absolute guest path
  #     executable: false
server:
  modules: []

# Steps run in order. run: a command line; a program without a slash is
# looked up in the guest's PATH (busybox applets, dig, dnsmasq, l45net,
# l45ctl, or a file copied in); one not found makes the file bad (125).
# background: true starts it and goes on (stopped with SIGTERM after the
# last step); listening: udp/PORT or tcp/PORT waits until it has bound
# that port. A foreground step has a timeout (default 60s, stretched on
# slow guests like the suites' deadlines). sleep: 2s pauses instead.
# name: how conditions refer to a step (default step1, step2, ...).
steps:
  - name: dnsmasq
    guest: server
    run: [dnsmasq, --keep-in-foreground, --no-resolv, --no-hosts, --user=root, --group=root,
          --listen-address=10.0.0.20, --bind-interfaces, --log-queries, --log-facility=-,
          --address=/probe.layer45.test/10.9.8.7]
    background: true
    listening: udp/53
  - name: echo
    guest: server
    run: [l45net, tcp-serve, -listen, "10.0.0.20:7112", -prefix, "echo:"]
    background: true
    listening: tcp/7112
  - name: dig
    guest: client
    run: [dig, +time=3, +tries=2, "@10.0.0.20", probe.layer45.test, A]
  - name: send
    guest: client
    run: [l45net, tcp, -to, "10.0.0.20:7112", -msg, fails-1, -msg, fails-2, -segments, "2"]
    timeout: 30s

# What counts as reproduced: when: any (default) or all of the conditions.
# Each condition is one of
#   crash:  {guest: client|server|any, title: SUBSTRING}   a kernel report (oops,
#           BUG, WARNING, KASAN, lockdep, hung task, ...) whose title contains it
#   exit:   {step: NAME, status: N}        the step's program exited N (-1: killed)
#   output: {step: NAME, stream: stdout|stderr|any, regexp: RE}
#   dns:    {name: NAME, answer: DATA}     a DNS response on the wire answers NAME
#                                          (with DATA among its records, if given)
#   wire:   {text: BYTES | hex: HEX, proto: udp|tcp, port: N}   the bytes crossed
#           the link in a UDP datagram or a TCP flow (proto and port optional)
# and not: true turns it round: reproduced when that is NOT seen. A run that
# stops early (a guest crashed or stopped answering) decides only what it
# saw; what it could not see makes the verdict undecided (125).
reproduced:
  when: any
  of:
    - crash: {guest: any}
    - output: {step: send, stream: stdout, regexp: '"errno":"EPERM"'}
      not: true
    - wire: {text: "fails-1", proto: tcp, port: 7112}
    - dns: {name: probe.layer45.test, answer: 10.9.8.7}
      not: true
`
