"""The runtime core, `jacc_runtime.walker` (docs/language.md: semantics and classes): spawn
order, `disengage`, `report`, fields and their defaults, `static has`, the spec
object, and `run` for async and non-async walkers — through hand-written walkers
and through compiled ones."""

from __future__ import annotations

import asyncio

import pytest

import jacc_runtime
from jacc.compiler import compile_source
from jacc_runtime import (
    APIProtocol,
    Disengage,
    Field,
    Walker,
    WalkerSpec,
    entry,
    exit,
    field,
    report,
    run,
    spawn,
)
from jacc_runtime.walker import walk


def _compiled(text: str) -> dict:
    namespace: dict = {"__name__": "app"}
    exec(compile_source(text).code, namespace)
    return namespace


# ---------------------------------------------------------------- order of abilities


class Ordered(Walker):
    @exit
    def declared_first_but_exit(self):
        report(self, "exit 1")

    @entry
    def one(self):
        report(self, "entry 1")

    def helper(self):  # a plain method is not an ability
        report(self, "helper")

    @entry
    def two(self):
        report(self, "entry 2")

    @exit
    def last(self):
        report(self, "exit 2")


def test_entries_in_declaration_order_then_exits() -> None:
    assert run(Ordered()) == ["entry 1", "entry 2", "exit 1", "exit 2"]


class Base(Walker):
    @entry
    def base_entry(self):
        report(self, "base entry")

    @exit
    def base_exit(self):
        report(self, "base exit")


class Middle(Base):
    @entry
    def middle_entry(self):
        report(self, "middle entry")


class Child(Middle):
    @exit
    def child_exit(self):
        report(self, "child exit")

    @entry
    def child_entry(self):
        report(self, "child entry")


def test_base_walkers_abilities_come_first() -> None:
    assert run(Child()) == ["base entry", "middle entry", "child entry",
                            "base exit", "child exit"]
    assert run(Base()) == ["base entry", "base exit"]


class Override(Child):
    @entry
    def middle_entry(self):
        report(self, "overridden middle")


def test_an_override_runs_in_the_place_of_the_ability_it_replaces() -> None:
    assert run(Override()) == ["base entry", "overridden middle", "child entry",
                               "base exit", "child exit"]


def test_the_spec_lists_the_abilities_in_run_order() -> None:
    spec = Child.__jacc_spec__
    assert [a.__name__ for a in spec.entries] == ["base_entry", "middle_entry", "child_entry"]
    assert [a.__name__ for a in spec.exits] == ["base_exit", "child_exit"]
    assert spec.abilities == spec.entries + spec.exits


def test_a_walker_without_abilities_reports_nothing() -> None:
    class Empty(Walker):
        pass

    assert run(Empty()) == []


# ---------------------------------------------------------------- report and disengage


def test_reports_are_kept_in_order_and_as_given() -> None:
    payload = {"k": [1]}

    class Reporter(Walker):
        @entry
        def go(self):
            report(self, payload)
            report(self, None)
            report(self, [payload])

    reports = run(Reporter())
    assert reports == [payload, None, [payload]]
    assert reports[0] is payload


def test_each_instance_has_its_own_reports() -> None:
    first, second = Ordered(), Ordered()
    run(first)
    assert run(second) == ["entry 1", "entry 2", "exit 1", "exit 2"]


class Stopper(Walker):
    where = field("str")

    @entry
    def first(self):
        report(self, "first")
        if self.where == "entry":
            raise Disengage()
        report(self, "still first")

    @entry
    def second(self):
        report(self, "second")
        if self.where == "nested":
            self.deep()

    def deep(self):
        report(self, "deep")
        raise Disengage()

    @exit
    def leave(self):
        report(self, "exit")
        if self.where == "exit":
            raise Disengage()

    @exit
    def leave_again(self):
        report(self, "exit again")


@pytest.mark.parametrize(("where", "expected"), [
    ("nowhere", ["first", "still first", "second", "exit", "exit again"]),
    ("entry", ["first"]),
    ("nested", ["first", "still first", "second", "deep"]),
    ("exit", ["first", "still first", "second", "exit"]),
])
def test_disengage_ends_the_walk_at_once(where: str, expected: list) -> None:
    assert run(Stopper(where=where)) == expected


def test_an_exception_in_an_ability_propagates_unchanged() -> None:
    class Failing(Walker):
        @entry
        def go(self):
            report(self, "before")
            raise KeyError("boom")

        @exit
        def never(self):
            raise AssertionError("an exit ran after a failing entry")

    with pytest.raises(KeyError, match="boom"):
        run(Failing())


# ---------------------------------------------------------------- fields


class Profile(Walker, protocol="websocket", public=True):
    name = field("str")
    tags = field("list[str]", lambda: [])
    meta = field("dict[str, int]", lambda: {"n": 0})
    nickname = field("str | None", lambda: None)
    visits = 0  # a class-level variable: `static has visits: int = 0;`

    @entry
    def go(self):
        self.tags.append(self.name)
        Profile.visits += 1
        report(self, list(self.tags))


def test_fields_are_set_from_keywords_and_defaults() -> None:
    profile = Profile(name="ann", nickname="a")
    assert (profile.name, profile.tags, profile.meta, profile.nickname) == (
        "ann", [], {"n": 0}, "a")


def test_a_list_default_is_never_shared() -> None:
    first, second = Profile(name="a"), Profile(name="b")
    assert first.tags is not second.tags and first.meta is not second.meta
    assert run(first) == [["a"]]
    assert run(second) == [["b"]]
    assert Profile(name="c").tags == []


def test_a_value_given_is_used_as_it_is() -> None:
    tags = ["x"]
    profile = Profile(name="a", tags=tags)
    assert profile.tags is tags
    assert run(profile) == [["x", "a"]]


def test_a_class_level_variable_is_shared_by_all_instances() -> None:
    before = Profile.visits
    run(Profile(name="a"))
    run(Profile(name="b"))
    assert Profile.visits == before + 2
    assert "visits" not in vars(Profile(name="c"))


def test_a_missing_required_field_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"Profile\(\) missing required field 'name'"):
        Profile()


def test_an_unknown_field_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"Profile\(\) got an unexpected field 'age'"):
        Profile(name="a", age=3)


def test_fields_are_not_positional() -> None:
    with pytest.raises(TypeError):
        Profile("ann")


def test_field_declarations_do_not_linger_on_the_class() -> None:
    # The instance attribute must not be shadowed by the class-body placeholder.
    assert "name" not in vars(Profile) and "tags" not in vars(Profile)


class Account(Walker):
    user = field("str")
    role = field("str", lambda: "member")


class Admin(Account):
    role = field("str", lambda: "admin")  # redeclared: same place, new default
    level = field("int", lambda: 1)


def test_fields_of_bases_come_first_and_can_be_redeclared() -> None:
    spec = Admin.__jacc_spec__
    assert [(f.name, f.type) for f in spec.fields] == [
        ("user", "str"), ("role", "str"), ("level", "int")]
    admin = Admin(user="root")
    assert (admin.user, admin.role, admin.level) == ("root", "admin", 1)
    assert Account(user="u").role == "member"
    with pytest.raises(TypeError, match="'user'"):
        Admin()


def test_repr_shows_the_fields() -> None:
    assert repr(Account(user="u")) == "Account(user='u', role='member')"


# ---------------------------------------------------------------- the spec object


def test_spec_carries_protocol_broadcast_public_and_fields() -> None:
    spec = Profile.__jacc_spec__
    assert isinstance(spec, WalkerSpec)
    assert (spec.name, spec.protocol, spec.broadcast, spec.public) == (
        "Profile", "websocket", False, True)
    assert spec.is_websocket and spec.method == "POST" and spec.path is None
    name, tags, meta, nickname = spec.fields
    assert isinstance(name, Field)
    assert (name.name, name.type, name.required, name.default_factory) == (
        "name", "str", True, None)
    assert (tags.type, tags.required, tags.default_factory()) == ("list[str]", False, [])
    assert tags.default_factory() is not tags.default_factory()
    assert (meta.type, meta.default_factory()) == ("dict[str, int]", {"n": 0})
    assert (nickname.type, nickname.default_factory()) == ("str | None", None)
    assert spec.field_names == {"name", "tags", "meta", "nickname"}


def test_spec_defaults() -> None:
    spec = Account.__jacc_spec__
    assert (spec.protocol, spec.broadcast, spec.public, spec.method, spec.path) == (
        "http", False, False, "POST", None)
    assert not spec.is_websocket and not spec.is_async


@pytest.mark.parametrize(("protocol", "expected"), [
    ("http", "http"), ("websocket", "websocket"), ("ws", "websocket"), ("WS", "websocket"),
    (APIProtocol.HTTP, "http"), (APIProtocol.WEBSOCKET, "websocket"),
])
def test_protocol_spellings_are_normalised(protocol, expected: str) -> None:
    class Chat(Walker, protocol=protocol, broadcast=True, method="get", path="/c"):
        pass

    spec = Chat.__jacc_spec__
    assert (spec.protocol, spec.broadcast, spec.method, spec.path) == (
        expected, True, "GET", "/c")


def test_each_subclass_gets_its_own_spec() -> None:
    assert Base.__jacc_spec__.name == "Base" and Child.__jacc_spec__.name == "Child"
    assert Base.__jacc_spec__ is not Child.__jacc_spec__
    assert len(Base.__jacc_spec__.entries) == 1


# ---------------------------------------------------------------- run and spawn


class AsyncWalker(Walker):
    delay = field("float", lambda: 0.0)

    @entry
    async def first(self):
        await asyncio.sleep(self.delay)
        report(self, "async entry")

    @entry
    def second(self):
        report(self, "sync entry")

    @exit
    async def done(self):
        report(self, "async exit")


def test_spec_knows_an_async_walker() -> None:
    assert AsyncWalker.__jacc_spec__.is_async
    assert not Ordered.__jacc_spec__.is_async


def test_run_runs_async_and_non_async_walkers_alike() -> None:
    assert run(AsyncWalker(delay=0.001)) == ["async entry", "sync entry", "async exit"]
    assert run(Ordered()) == ["entry 1", "entry 2", "exit 1", "exit 2"]


def test_run_inside_an_event_loop_says_to_await_spawn() -> None:
    async def inside():
        with pytest.raises(RuntimeError, match="spawn"):
            run(Ordered())
        return await spawn(AsyncWalker())

    assert asyncio.run(inside()) == ["async entry", "sync entry", "async exit"]


def test_spawn_returns_the_walkers_reports() -> None:
    walker = Ordered()
    reports = asyncio.run(spawn(walker))
    assert reports == ["entry 1", "entry 2", "exit 1", "exit 2"]


def test_disengage_in_an_async_ability() -> None:
    class Quits(Walker):
        @entry
        async def go(self):
            report(self, "go")
            await asyncio.sleep(0)
            raise Disengage()

        @exit
        def never(self):
            report(self, "never")

    assert run(Quits()) == ["go"]


def test_walkers_run_concurrently_under_spawn() -> None:
    async def both():
        slow, fast = AsyncWalker(delay=0.05), AsyncWalker(delay=0)
        return await asyncio.gather(spawn(slow), spawn(fast))

    assert asyncio.run(both()) == [["async entry", "sync entry", "async exit"]] * 2


def test_walk_runs_a_non_async_walker_without_a_loop() -> None:
    class Quits(Walker):
        @entry
        def go(self):
            report(self, "go")
            raise Disengage()

        @exit
        def never(self):
            report(self, "never")

    assert walk(Ordered()) == ["entry 1", "entry 2", "exit 1", "exit 2"]
    assert walk(Quits()) == ["go"]


def test_walk_refuses_an_async_walker() -> None:
    with pytest.raises(TypeError, match="AsyncWalker has async abilities"):
        walk(AsyncWalker())


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()],
                         ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_spawn_and_walk_let_every_base_exception_out(error) -> None:
    # Telling a walker's failure from a cancellation is the server's job (run_walker).
    class Raises(Walker):
        @entry
        def go(self):
            raise error

    with pytest.raises(type(error)):
        asyncio.run(spawn(Raises()))
    with pytest.raises(type(error)):
        walk(Raises())


# ---------------------------------------------------------------- compiled walkers


COMPILED = '''
walker Base {
    has log: list = [];

    can base_entry with entry { report "base entry"; }
    can base_exit with exit { report "base exit"; }
}

async walker Child(Base) {
    has name: str;
    static has count: int = 0;

    can child_exit with exit { report "child exit"; }

    async can child_entry with Root entry {
        Child.count += 1;
        self.log.append(self.name);
        report f"child entry {self.name}";
        if self.name == "stop" {
            disengage;
        }
    }

    can base_entry with entry { report "overridden base entry"; }
}
'''


def test_compiled_walkers_follow_the_same_order() -> None:
    app = _compiled(COMPILED)
    assert run(app["Base"]()) == ["base entry", "base exit"]
    assert run(app["Child"](name="a")) == [
        "overridden base entry", "child entry a", "base exit", "child exit"]


def test_compiled_disengage_skips_the_exits() -> None:
    app = _compiled(COMPILED)
    assert run(app["Child"](name="stop")) == ["overridden base entry", "child entry stop"]


def test_compiled_static_has_and_per_instance_defaults() -> None:
    app = _compiled(COMPILED)
    first, second = app["Child"](name="a"), app["Child"](name="b")
    run(first)
    run(second)
    assert app["Child"].count == 2
    assert (first.log, second.log) == (["a"], ["b"])
    assert [f.name for f in app["Child"].__jacc_spec__.fields] == ["log", "name"]


def test_compiled_missing_field_and_spec() -> None:
    app = _compiled(COMPILED)
    with pytest.raises(TypeError, match="'name'"):
        app["Child"]()
    spec = app["Child"].__jacc_spec__
    assert (spec.protocol, spec.broadcast, spec.public, spec.is_async) == (
        "http", False, False, True)
    assert isinstance(app["Child"](name="x"), jacc_runtime.Walker)


def test_disengage_is_not_caught_by_except_exception() -> None:
    app = _compiled('''
walker W {
    can a with entry {
        try {
            disengage;
        } except Exception as error {
            report "caught";
        } finally {
            report "finally";
        }
        report "after";
    }
}
''')
    assert run(app["W"]()) == ["finally"]
