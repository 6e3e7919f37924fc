"""The project's own toolkit around the SDK: what the build, the VM runner, the guest
suite, the fuzzer, the benches and the examples share.

- ``env``: the one reader of each LIBMSHARE_* variable the tooling interprets;
- ``gitrev``: the checkout's git revision;
- ``proc``: /proc readings (meminfo, status, smaps, maps, interrupts, the msharefs check);
- ``kmsg``: the kernel log from a point on; ``dmesg``: the splat scanner;
- ``child``: fork a child and talk to it;
- ``kapi``: the raw system calls the guest suite and the fuzzer make.
"""
