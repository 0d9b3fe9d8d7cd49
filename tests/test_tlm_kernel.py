"""Unit tests of the TLM-2.0 kernel idioms on SimPy: payload, sockets, memory, quantum keeper."""

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from tlm import (
    BindingError,
    Command,
    InitiatorSocket,
    Memory,
    Payload,
    QuantumKeeper,
    ResponseStatus,
    TargetSocket,
    TransportError,
    occupy,
)


def run_process(env, generator):
    """Run ``generator`` as a SimPy process to completion; return its value."""
    process = env.process(generator)
    env.run()
    return process.value


def bound_initiator(target_socket, name="cpu.socket"):
    socket = InitiatorSocket(name)
    socket.bind(target_socket)
    return socket


# ---------------------------------------------------------------------------------------
# payload
# ---------------------------------------------------------------------------------------


def test_payload_defaults():
    p = Payload(Command.READ, 0x40, 8)
    assert p.data is None
    assert p.response_status is ResponseStatus.INCOMPLETE
    assert p.extensions == {}
    assert not p.is_response_ok()
    assert p.is_response_error()
    q = Payload(Command.READ, 0, 1)
    p.set_extension("x", 1)
    assert q.extensions == {}, "extensions must not be shared between payloads"


def test_response_status_mirrors_tlm_values():
    assert ResponseStatus.OK.value == 1
    assert ResponseStatus.INCOMPLETE.value == 0
    assert ResponseStatus.GENERIC_ERROR.value == -1
    assert ResponseStatus.ADDRESS_ERROR.value == -2
    assert ResponseStatus.COMMAND_ERROR.value == -3
    assert ResponseStatus.BURST_ERROR.value == -4
    assert ResponseStatus.BURST_ERROR.is_error
    assert not ResponseStatus.INCOMPLETE.is_error
    assert not ResponseStatus.OK.is_error
    assert {c.name for c in Command} == {"READ", "WRITE", "IGNORE"}


def test_payload_constructors_count_elements():
    values = np.arange(12, dtype=np.int8).reshape(3, 4)
    w = Payload.write(0x10, values)
    assert (w.command, w.address, w.length) == (Command.WRITE, 0x10, 12)
    d = Payload.write(0, {"values": values, "scales": np.ones(3)})
    assert d.length == 12
    with pytest.raises(ValueError, match="values"):
        Payload.write(0, {"scales": np.ones(3)})
    assert Payload.write(0, {"scales": np.ones(3)}, length=3).length == 3
    r = Payload.read(0x20, 5)
    assert (r.command, r.address, r.length, r.data) == (Command.READ, 0x20, 5, None)


def test_payload_extensions():
    p = Payload(Command.WRITE, 0, 4, np.zeros(4))
    assert p.get_extension("layer") is None
    assert p.get_extension("layer", "none") == "none"
    assert p.set_extension("layer", "fc1") is None
    assert p.set_extension("layer", "fc2") == "fc1"
    assert p.get_extension("layer") == "fc2"
    p.clear_extension("layer")
    p.clear_extension("absent")
    assert p.get_extension("layer") is None


def test_raise_for_status():
    p = Payload(Command.READ, 0x1F0, 16)
    p.response_status = ResponseStatus.OK
    assert p.raise_for_status() is p
    assert p.check() is p
    p.response_status = ResponseStatus.ADDRESS_ERROR
    with pytest.raises(TransportError) as info:
        p.check()
    assert info.value.payload is p
    message = str(info.value)
    assert "ADDRESS_ERROR" in message and "0x1f0" in message and "16" in message
    assert "READ" in message
    with pytest.raises(TransportError, match="INCOMPLETE"):
        Payload(Command.WRITE, 0, 1).raise_for_status()


# ---------------------------------------------------------------------------------------
# sockets and blocking transport
# ---------------------------------------------------------------------------------------


def adds_latency(latency):
    def b_transport(payload, delay):
        payload.response_status = ResponseStatus.OK
        return delay + latency
        yield  # a generator function

    return b_transport


def test_bind_both_directions():
    target = TargetSocket("mem.socket", adds_latency(1))
    initiator = InitiatorSocket("cpu.socket")
    assert not initiator.is_bound and not target.is_bound
    initiator.bind(target)
    assert initiator.target is target
    assert target.initiators == (initiator,)
    other_target = TargetSocket("buf.socket", adds_latency(1))
    other_initiator = InitiatorSocket("pe.socket")
    other_target.bind(other_initiator)
    assert other_initiator.target is other_target
    assert other_target.is_bound and other_initiator.is_bound


def test_binding_twice_raises_naming_the_socket():
    target = TargetSocket("mem.socket", adds_latency(1))
    initiator = bound_initiator(target, "cpu.socket")
    with pytest.raises(BindingError, match="cpu.socket.*already bound"):
        initiator.bind(TargetSocket("other.socket"))
    with pytest.raises(BindingError, match="mem.socket.*already bound"):
        InitiatorSocket("dma.socket").bind(target)
    with pytest.raises(BindingError, match="mem.socket.*already bound"):
        target.bind(InitiatorSocket("dma.socket"))


def test_multi_binding_target():
    target = TargetSocket("bus.socket", adds_latency(1), max_bindings=None)
    a = bound_initiator(target, "a")
    b = bound_initiator(target, "b")
    assert target.initiators == (a, b)


def test_binding_the_wrong_kind_raises():
    with pytest.raises(BindingError, match="cpu.socket"):
        InitiatorSocket("cpu.socket").bind(InitiatorSocket("x"))
    with pytest.raises(BindingError, match="mem.socket"):
        TargetSocket("mem.socket").bind(TargetSocket("x"))


def test_unbound_initiator_raises_naming_the_socket():
    env = simpy.Environment()
    socket = InitiatorSocket("pe3.socket")
    with pytest.raises(BindingError, match="pe3.socket.*not bound"):
        run_process(env, socket.b_transport(Payload.read(0, 1), 0))
    with pytest.raises(BindingError, match="pe3.socket"):
        _ = socket.target


def test_target_without_b_transport_raises():
    env = simpy.Environment()
    socket = bound_initiator(TargetSocket("mem.socket"))
    with pytest.raises(BindingError, match="mem.socket.*no b_transport"):
        run_process(env, socket.b_transport(Payload.read(0, 1), 0))


def test_register_b_transport_once():
    target = TargetSocket("mem.socket")
    target.register_b_transport(adds_latency(1))
    with pytest.raises(BindingError, match="mem.socket"):
        target.register_b_transport(adds_latency(2))
    with pytest.raises(TypeError):
        TargetSocket("t").register_b_transport(42)


def test_b_transport_adds_target_latency_to_the_delay():
    env = simpy.Environment()
    socket = bound_initiator(TargetSocket("mem.socket", adds_latency(7)))
    payload = Payload.read(0, 1)

    def initiator():
        delay = yield from socket.b_transport(payload, 5)
        delay = yield from socket.b_transport(payload, delay)
        return delay

    assert run_process(env, initiator()) == 5 + 7 + 7
    assert env.now == 0, "loosely timed: the delay is annotated, not waited"
    assert payload.is_response_ok()


def test_target_may_yield_simpy_events():
    env = simpy.Environment()

    def b_transport(payload, delay):
        yield env.timeout(3)
        return delay + 2

    socket = bound_initiator(TargetSocket("t", b_transport))

    def initiator():
        return (yield from socket.b_transport(Payload.read(0, 1), 1.5))

    assert run_process(env, initiator()) == 3.5
    assert env.now == 3


def test_plain_function_target_is_accepted():
    env = simpy.Environment()
    socket = bound_initiator(TargetSocket("t", lambda payload, delay: delay + 4))

    def initiator():
        return (yield from socket.b_transport(Payload.read(0, 1)))

    assert run_process(env, initiator()) == 4


def test_bad_delays_are_rejected():
    env = simpy.Environment()

    def forgets_return(payload, delay):
        yield env.timeout(1)

    socket = bound_initiator(TargetSocket("t", forgets_return))
    with pytest.raises(TypeError, match="forget to return"):
        run_process(env, socket.b_transport(Payload.read(0, 1), 0))
    socket = bound_initiator(TargetSocket("u", adds_latency(1)))
    with pytest.raises(ValueError, match="negative"):
        run_process(simpy.Environment(), socket.b_transport(Payload.read(0, 1), -1))


# ---------------------------------------------------------------------------------------
# memory target
# ---------------------------------------------------------------------------------------


def test_memory_write_read_round_trip_of_numpy_data():
    env = simpy.Environment()
    memory = Memory(env, "dram", 64, dtype=np.int32, base_address=0x100, latency=10,
                    cycles_per_element=0.5)
    socket = bound_initiator(memory.socket)
    values = np.arange(-8, 8, dtype=np.int32).reshape(4, 4)
    read = Payload.read(0x104, 16)

    def initiator():
        write = Payload.write(0x104, values)
        delay = yield from socket.b_transport(write, 0)
        write.check()
        delay = yield from socket.b_transport(read, delay)
        read.check()
        return delay

    assert run_process(env, initiator()) == 0
    assert env.now == 2 * (10 + 0.5 * 16)
    np.testing.assert_array_equal(read.data, values.ravel())
    assert read.data.dtype == np.int32
    np.testing.assert_array_equal(memory.array[4:20], values.ravel())
    assert not memory.array[:4].any() and not memory.array[20:].any()
    read.data[0] = 99
    assert memory.array[4] == -8, "a read returns a copy"
    assert memory.actions == {"dram.write": 16, "dram.read": 16, "dram.access": 2}


def test_memory_read_into_initiator_buffer():
    env = simpy.Environment()
    memory = Memory(env, data=np.arange(10.0))
    socket = bound_initiator(memory.socket)
    buffer = np.zeros((2, 3))
    payload = Payload.read(2, 6, buffer)
    run_process(env, socket.b_transport(payload, 0))
    payload.check()
    assert payload.data is buffer
    np.testing.assert_array_equal(buffer, [[2, 3, 4], [5, 6, 7]])
    assert memory.actions["memory.read"] == 6


def test_memory_without_ports_is_purely_loosely_timed():
    env = simpy.Environment()
    memory = Memory(env, size=32, latency=4, cycles_per_element=2, ports=None)
    socket = bound_initiator(memory.socket)

    def initiator():
        return (yield from socket.b_transport(Payload.write(0, np.ones(8)), 3))

    assert run_process(env, initiator()) == 3 + 4 + 2 * 8
    assert env.now == 0
    assert memory.array[:8].sum() == 8


def test_memory_with_ports_syncs_the_annotated_delay():
    env = simpy.Environment()
    memory = Memory(env, size=32, latency=4, cycles_per_element=2, ports=1)
    socket = bound_initiator(memory.socket)

    def initiator():
        return (yield from socket.b_transport(Payload.read(0, 8), 3))

    assert run_process(env, initiator()) == 0
    assert env.now == 3 + 4 + 2 * 8


@pytest.mark.parametrize(
    "payload, status",
    [
        (Payload.read(0x0FF, 4), ResponseStatus.ADDRESS_ERROR),  # below base
        (Payload.read(0x110, 1), ResponseStatus.ADDRESS_ERROR),  # at the end
        (Payload.read(0x10E, 4), ResponseStatus.ADDRESS_ERROR),  # straddles the end
        (Payload.write(0x200, np.ones(2)), ResponseStatus.ADDRESS_ERROR),
        (Payload(Command.READ, 0x100, 0), ResponseStatus.BURST_ERROR),  # zero length
        (Payload(Command.READ, 0x100, -2), ResponseStatus.BURST_ERROR),
        (Payload(Command.READ, 0x100, 2.0), ResponseStatus.BURST_ERROR),
        (Payload(Command.WRITE, 0x100, 4, np.ones(3)), ResponseStatus.BURST_ERROR),
        (Payload(Command.WRITE, 0x100, 4, None), ResponseStatus.BURST_ERROR),
        (Payload(Command.READ, 0x100, 4, np.zeros(5)), ResponseStatus.BURST_ERROR),
        (Payload("READ", 0x100, 4), ResponseStatus.COMMAND_ERROR),
        (Payload(None, 0x100, 4), ResponseStatus.COMMAND_ERROR),
        (Payload.write(0x100, np.array([0.5, 1.5])), ResponseStatus.GENERIC_ERROR),
    ],
)
def test_memory_errors(payload, status):
    env = simpy.Environment()
    memory = Memory(env, "sram", data=np.arange(16, dtype=np.int16), base_address=0x100,
                    latency=10, cycles_per_element=1)
    socket = bound_initiator(memory.socket)
    before = memory.array.copy()
    delay = run_process(env, socket.b_transport(payload, 6))
    assert payload.response_status is status
    assert delay == 6 and env.now == 0, "an error takes no time"
    np.testing.assert_array_equal(memory.array, before)
    assert not memory.actions
    with pytest.raises(TransportError) as info:
        payload.raise_for_status()
    message = str(info.value)
    assert status.name in message
    assert hex(payload.address) in message
    assert f"length {payload.length}" in message


def test_memory_ignore_command_is_ok_and_free():
    env = simpy.Environment()
    memory = Memory(env, size=4, latency=10)
    payload = Payload(Command.IGNORE, 0, 0)
    assert run_process(env, bound_initiator(memory.socket).b_transport(payload, 1)) == 1
    assert payload.is_response_ok() and env.now == 0 and not memory.actions


def test_memory_constructor_checks():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="size or initial data"):
        Memory(env, "m")
    with pytest.raises(ValueError, match="size 3"):
        Memory(env, "m", 3, data=np.zeros(4))
    assert Memory(env, data=np.zeros((2, 3), np.int8)).array.dtype == np.int8
    assert Memory(env, size=5).array.dtype == np.float64
    source = np.zeros(4)
    memory = Memory(env, data=source)
    memory.array[0] = 1
    assert source[0] == 0, "the memory owns a copy"


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 31), st.integers(1, 32), st.integers(-100, 100)),
        min_size=1,
        max_size=8,
    )
)
def test_memory_matches_a_numpy_shadow(writes):
    env = simpy.Environment()
    memory = Memory(env, size=32, dtype=np.int64, latency=1, cycles_per_element=1)
    socket = bound_initiator(memory.socket)
    shadow = np.zeros(32, dtype=np.int64)

    def initiator():
        for address, length, value in writes:
            data = np.full(length, value, dtype=np.int64)
            yield from socket.b_transport(Payload.write(address, data), 0)
            if address + length <= 32:
                shadow[address : address + length] = value
        read = Payload.read(0, 32)
        yield from socket.b_transport(read, 0)
        return read.check().data

    np.testing.assert_array_equal(run_process(env, initiator()), shadow)


# ---------------------------------------------------------------------------------------
# contention: two initiators, one target
# ---------------------------------------------------------------------------------------


class Initiator:
    """A test initiator module: one socket, one access, records when it completes."""

    def __init__(self, env, name, target_socket, payload, delay=0):
        self.env = env
        self.socket = InitiatorSocket(f"{name}.socket")
        self.socket.bind(target_socket)
        self.payload = payload
        self.delay = delay
        self.done_at = None
        self.returned_delay = None
        self.process = env.process(self.run())

    def run(self):
        self.returned_delay = yield from self.socket.b_transport(self.payload, self.delay)
        self.payload.check()
        self.done_at = self.env.now


def contend(ports, delays=(0, 0)):
    env = simpy.Environment()
    # occupancy of a 5-element access: 10 + 2 * 5 = 20 cycles
    memory = Memory(env, "gb", 64, latency=10, cycles_per_element=2, ports=ports)
    a = Initiator(env, "pe0", memory.socket, Payload.read(0, 5), delays[0])
    b = Initiator(env, "pe1", memory.socket, Payload.write(8, np.ones(5)), delays[1])
    env.run()
    return a, b, memory


def test_two_initiators_contend_for_one_port():
    a, b, memory = contend(ports=1)
    assert a.done_at == 20
    assert b.done_at == 40, "the second waits out the first one's 20-cycle occupancy"
    assert a.returned_delay == b.returned_delay == 0
    assert memory.actions == {"gb.read": 5, "gb.write": 5, "gb.access": 2}


def test_two_ports_do_not_delay_each_other():
    a, b, _ = contend(ports=2)
    assert a.done_at == b.done_at == 20


def test_contention_honours_annotated_delays():
    # pe0 is 5 cycles ahead, so pe1 (no delay) gets the port first at t=0 and holds it
    # until 20; pe0 queues at t=5 and is served 20..40.
    a, b, _ = contend(ports=1, delays=(5, 0))
    assert b.done_at == 20
    assert a.done_at == 40
    a, b, _ = contend(ports=2, delays=(5, 0))
    assert (a.done_at, b.done_at) == (25, 20)


def test_occupy_helper():
    env = simpy.Environment()
    port = simpy.Resource(env, capacity=1)
    ends = []

    def user(delay, occupancy):
        remaining = yield from occupy(env, port, delay, occupancy)
        ends.append((env.now, remaining))

    env.process(user(0, 7))
    env.process(user(2, 3))
    env.run()
    assert ends == [(7, 0), (10, 0)]


# ---------------------------------------------------------------------------------------
# quantum keeper
# ---------------------------------------------------------------------------------------


def test_quantum_keeper_local_time_accumulates_without_advancing_env():
    env = simpy.Environment()
    qk = QuantumKeeper(env, global_quantum=100)
    qk.inc(30)
    qk.inc(25.5)
    assert qk.get_local_time() == 55.5
    assert qk.get_current_time() == env.now + 55.5 == 55.5
    assert not qk.need_sync()
    qk.inc(44.5)
    assert qk.need_sync()
    assert env.now == 0
    qk.set(10)
    assert qk.get_local_time() == 10 and not qk.need_sync()
    qk.reset()
    assert qk.get_local_time() == 0
    with pytest.raises(ValueError):
        qk.inc(-1)
    with pytest.raises(TypeError):
        qk.inc(None)


def test_quantum_keeper_syncs_only_when_needed_at_quantum_boundaries():
    env = simpy.Environment()
    qk = QuantumKeeper(env, global_quantum=100)
    syncs = []

    def initiator():
        for _ in range(10):
            qk.inc(30)
            if qk.need_sync():
                yield from qk.sync()
                syncs.append(env.now)

    run_process(env, initiator())
    # 0 -> next boundary 100: synced at 120; next boundary 200: at 210; then 300.
    assert syncs == [120, 210, 300]
    assert env.now == 300 == 10 * 30
    assert qk.get_local_time() == 0


def test_quantum_keeper_sync_advances_env_by_local_time():
    env = simpy.Environment()
    qk = QuantumKeeper(env, global_quantum=50)

    def initiator():
        qk.inc(17)
        yield from qk.sync()
        assert env.now == 17 and qk.get_local_time() == 0
        # next boundary after 17 is 50: 33 more cycles of local time are allowed
        assert qk.compute_local_quantum() == 33
        qk.inc(32)
        assert not qk.need_sync()
        yield from qk.set_and_sync(33)
        assert env.now == 50

    run_process(env, initiator())
    assert env.now == 50


def test_quantum_zero_syncs_after_every_increment():
    env = simpy.Environment()
    qk = QuantumKeeper(env)
    assert qk.get_global_quantum() == 0
    qk.inc(1)
    assert qk.need_sync()


def test_set_global_quantum_is_per_keeper():
    env = simpy.Environment()
    a = QuantumKeeper(env, global_quantum=10)
    b = QuantumKeeper(env, global_quantum=10)
    a.set_global_quantum(1000)
    a.inc(500)
    b.inc(500)
    assert not a.need_sync() and b.need_sync()
    assert a.global_quantum == 1000 and b.global_quantum == 10
    b.global_quantum = 2000
    assert not b.need_sync()
    with pytest.raises(ValueError):
        a.set_global_quantum(-5)


def test_quantum_keeper_with_a_loosely_timed_memory():
    env = simpy.Environment()
    memory = Memory(env, size=64, latency=10, cycles_per_element=1, ports=None)
    socket = bound_initiator(memory.socket)
    qk = QuantumKeeper(env, global_quantum=100)
    syncs = []

    def initiator():
        for i in range(8):
            payload = Payload.write(8 * i, np.full(8, i, dtype=float))
            delay = yield from socket.b_transport(payload, qk.get_local_time())
            payload.check()
            qk.set(delay)
            if qk.need_sync():
                syncs.append(qk.get_current_time())
                yield from qk.sync()
        yield from qk.sync()

    run_process(env, initiator())
    # every write is 10 + 8 = 18 cycles: the boundary 100 is passed at 108; from there
    # the next boundary is 200, which 144 does not reach, so the rest syncs at the end
    assert syncs == [108]
    assert env.now == 8 * 18
    np.testing.assert_array_equal(memory.array, np.repeat(np.arange(8.0), 8))
