"""A tight LALR loop over the parse table that Lark built for grammar/jac.lark.

Lark's own driver (`ParserState.feed_token`) spends most of its time on
bookkeeping: a `Token` object for every terminal, punctuation included, and a
chain of wrapper objects called on every reduction. This driver runs the same
table in one loop fused with the lexer's master expression (`jacc.lexer`):
terminals stay `re.Match` objects on the stack and become Lark `Token`s only
where a rule keeps them, and what each rule hands its callback is worked out
once, from Lark's own rule options, the way Lark's `parse_tree_builder` shapes
children (punctuation dropped, `_rule` children spliced into the parent, None
for an absent `[x]`, a `?rule` with one child replaced by it). Nothing here
names a rule of the grammar, so grammar changes flow through;
`tests/test_lalr.py` holds the result equal to Lark's.

The driver only accepts. On a syntax error it raises `Rejected`, and the caller
runs Lark's own parser, whose `UnexpectedInput` (with its interactive parser)
the diagnostics are made from.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from operator import itemgetter
from typing import Any, Callable

from lark import Lark, Token, Tree
from lark.parsers.lalr_analysis import Shift
from lark.visitors import Transformer, Transformer_InPlace

from .lexer import END, OPERATOR, JacLexer

_END_TERMINAL = "$END"
_NEWLINE = re.compile("\n")
_new_str = str.__new__

# How a child reaches the callback (see `_Shaper.plan`).
_KEEP, _SPLICE_LIST, _SPLICE_TREE = 0, 1, 2
# What a reduction of one child does to its value, when that is all it does (see
# `_Shaper.move`): hands it on, wraps it in a list (a `_rule` of one child), hands on
# the list it is (a `_rule` of one `_rule`), or hands on the one item of that list
# (a `?rule` of one `_rule`).
_SAME, _WRAP, _PASS, _UNWRAP = "same", "wrap", "pass", "unwrap"


class Rejected(Exception):
    """The text is not a sentence of the grammar: `kind` is the terminal (or
    `lexer.BAD`, or `$END`) that no action accepts, found at `position`."""

    def __init__(self, kind: str, position: int) -> None:
        super().__init__(f"{kind} at {position}")
        self.kind = kind
        self.position = position


class Driver:
    """Parses with the table of `lark` (an LALR `Lark`) and runs `transformer`'s
    callbacks as Lark would run them inside its parser (None: Lark's trees)."""

    def __init__(self, lark: Lark, lexer: JacLexer, transformer: Any = None) -> None:
        _refuse_terminal_callbacks(lark, transformer)
        table = lark.parser.parser.parser.parse_table
        number = {state: i for i, state in enumerate(table.states)}
        self._start = {name: number[s] for name, s in table.start_states.items()}
        self._end = {name: number[s] for name, s in table.end_states.items()}
        # actions[state][terminal]: a state to shift to (>= 0), or ~step (< 0).
        self._actions: list[dict[str, int]] = [{} for _ in number]
        self._gotos: dict[str, dict[int, int]] = {}
        reductions: dict[Any, list[tuple[int, str]]] = {}
        for state, row in table.states.items():
            for symbol, (action, target) in row.items():
                if action is not Shift:
                    reductions.setdefault(target, []).append((number[state], symbol))
                elif symbol.isupper() or symbol == _END_TERMINAL:  # Lark's test for a terminal
                    self._actions[number[state]][symbol] = number[target]
                else:
                    self._gotos.setdefault(symbol, {})[number[state]] = number[target]
        self._steps: list[tuple] = []
        self._chains: dict[int, tuple[str, str, str]] = {}  # step: lookahead, origin, move
        self._unwraps: dict[int, str] = {}  # step: origin
        shaper = _Shaper(lark, transformer, reductions)
        for rule, where in reductions.items():
            self._add_reduction(rule, where, *shaper.build(rule))
        self._scan = lexer.master.finditer
        self._keywords = lexer.keywords
        self._operators = lexer.operators

    def _add_reduction(self, rule, where: list[tuple[int, str]], kept: tuple,
                       build: Callable | None, move: str | None) -> None:
        """Steps are (size, goto, kept terminals, build). A reduction that only
        moves its one child's value on (`_SAME`, `_WRAP`, `_PASS`) only moves the
        top state, from the state below; so it, and those like it that follow on
        the same lookahead, are one step per (state, lookahead): build None, and a
        goto filled in as states below are met (`_chain`)."""
        origin = rule.origin.name
        if move in (_SAME, _WRAP, _PASS):
            for state, terminal in where:
                self._chains[len(self._steps)] = (terminal, origin, move)
                self._steps.append((1, {}, (), None))
                self._actions[state][terminal] = ~(len(self._steps) - 1)
            return
        if move == _UNWRAP:
            self._unwraps[len(self._steps)] = origin
        self._steps.append((len(rule.expansion), self._gotos[origin], kept, build))
        for state, terminal in where:
            self._actions[state][terminal] = ~(len(self._steps) - 1)

    def _chain(self, step: int, below: int) -> int:
        """The top state after the reductions that `step` stands for, over `below`;
        its complement (< 0) if they leave the value wrapped in a list.

        A wrap and then an unwrap is no change: `x` made `[x]` by a `_rule` and
        handed on by a `?rule` is `x` again, as are the calls they would cost.
        """
        terminal, origin, move = self._chains[step]
        wrapped = move == _WRAP
        state = self._gotos[origin][below]
        ends = self._end.values()
        while state not in ends:
            action = self._actions[state].get(terminal)
            if action is None or action >= 0:
                break
            if ~action in self._chains:
                _, origin, move = self._chains[~action]
                if move == _WRAP and wrapped:
                    break  # `[[x]]`: left to the step itself
                wrapped = wrapped or move == _WRAP
            elif ~action in self._unwraps and wrapped:  # `[x]`, of one item for sure
                origin, wrapped = self._unwraps[~action], False
            else:
                break
            state = self._gotos[origin][below]
        self._steps[step][1][below] = target = ~state if wrapped else state
        return target

    def parse(self, text: str, start: str) -> Any:
        """The transformer's value for `text` read as `start`; `Rejected` if it is not one.

        Cost: about 2 µs a token, its reductions and `Token` included, plus the
        callbacks (bench/compile.py prints it beside Lark's own driver).
        """
        actions, steps = self._actions, self._steps
        keywords, operators = self._keywords, self._operators
        token = _token_maker(text)
        state = self._start[start]
        states = [state]
        values: list = []
        for found in self._scan(text):
            kind = found.lastgroup
            if kind == "NAME":
                kind = keywords.get(found.group(found.lastindex), "NAME")
            elif kind == OPERATOR:
                kind = operators[found.group(found.lastindex)]
            while True:
                try:
                    action = actions[state][kind]
                except KeyError:
                    if kind == END:
                        return self._finish(states, values, token, self._end[start], len(text))
                    raise Rejected(kind, found.start(found.lastindex)) from None
                if action >= 0:
                    break
                size, goto, kept, build = steps[~action]
                if build is None:  # rules that hand their one child on: only the top moves
                    try:
                        state = goto[states[-2]]
                    except KeyError:
                        state = self._chain(~action, states[-2])
                    if state < 0:
                        state = ~state
                        values[-1] = [values[-1]]
                    states[-1] = state
                    continue
                if size:
                    children = values[-size:]
                    del values[-size:]
                    del states[-size:]
                else:
                    children = []
                for index, terminal in kept:
                    children[index] = token(children[index], terminal)
                values.append(build(children))
                state = goto[states[-1]]
                states.append(state)
            states.append(action)
            values.append(found)
            state = action
        raise AssertionError("the master expression ends every text with END")

    def _finish(self, states: list, values: list, token: Callable, end_state: int,
                end: int) -> Any:
        """Reduce at the end of the text until the start symbol is complete."""
        while True:
            action = self._actions[states[-1]].get(_END_TERMINAL)
            if action is None or action >= 0:
                raise Rejected(_END_TERMINAL, end)
            size, goto, kept, build = self._steps[~action]
            if build is None:
                below = states[-2]
                target = goto[below] if below in goto else self._chain(~action, below)
                if target < 0:
                    target = ~target
                    values[-1] = [values[-1]]
                states[-1] = target
            else:
                children = values[len(values) - size:]
                del values[len(values) - size:]
                del states[len(states) - size:]
                for index, terminal in kept:
                    children[index] = token(children[index], terminal)
                values.append(build(children))
                states.append(goto[states[-1]])
            if states[-1] == end_state:
                return values[-1]


def _token_maker(text: str) -> Callable[[re.Match, str], Token]:
    """For one text: the Lark `Token` of a match, with Lark's lines and columns
    (lines counted by "\\n" alone), made only for the terminals a rule keeps."""
    # Where each line starts, and past the last one a start that no token reaches.
    starts = [0, *(m.end() for m in _NEWLINE.finditer(text)), len(text) + 1]
    # The line of the token made last: the next one is most often on it too.
    line, line_start, next_start = 1, 0, starts[1]

    def token(found: re.Match, kind: str) -> Token:
        nonlocal line, line_start, next_start
        group = found.lastindex
        start, end = found.span(group)
        if not line_start <= start < next_start:
            line = bisect_right(starts, start)
            line_start, next_start = starts[line - 1], starts[line]
        column = start - line_start + 1
        # What `Token(...)` makes, without the keyword-argument shim of its `__new__`
        # that costs more than the rest of this function.
        value = found.group(group)
        token = _new_str(Token, value)
        token.type = kind
        token.value = value
        token.start_pos = start
        token.line = line
        token.column = column
        if end < next_start:
            token.end_line = line
            token.end_column = column + end - start
        else:  # the token spans lines
            token.end_line = end_line = bisect_right(starts, end)
            token.end_column = end - starts[end_line - 1] + 1
        token.end_pos = end
        return token

    return token


class _Shaper:
    """Per rule, once: which children its callback gets, and the callback."""

    def __init__(self, lark: Lark, transformer: Any, rules) -> None:
        if lark.options.propagate_positions:
            raise ValueError("jacc.lalr: propagate_positions is not supported")
        self.transformer = transformer
        self.placeholders = lark.options.maybe_placeholders
        self.tree_class = lark.options.tree_class or Tree
        self.as_list = _inlined_as_lists(rules, transformer, lark.options.start)

    def build(self, rule) -> tuple[tuple[tuple[int, str], ...], Callable, str | None]:
        """The kept terminals, as (index, type), the function from children to
        value, and what it does to a one child's value, if that is all it does."""
        plan, trailing = self.plan(rule)
        kept = tuple((i, rule.expansion[i].name) for i, _, _ in plan
                     if rule.expansion[i].is_term)
        single = rule.options.expand1 and not rule.alias
        as_list = rule.origin.name in self.as_list
        callback = None if as_list else self.callback(rule)
        build = _builder(plan, trailing, len(rule.expansion), single, callback)
        moves = len(rule.expansion) == 1 and not trailing and not kept
        return kept, build, self.move(plan, single, as_list) if moves else None

    @staticmethod
    def move(plan: list, single: bool, as_list: bool) -> str | None:
        if len(plan) != 1 or plan[0][2]:  # its child dropped, or Nones around it
            return None
        how = plan[0][1]
        if how == _KEEP:
            return _SAME if single else _WRAP if as_list else None
        if how == _SPLICE_LIST:
            return _PASS if as_list else _UNWRAP if single else None
        return None

    def plan(self, rule) -> tuple[list[tuple[int, int, int]], int]:
        """(index, how, Nones before it) for each child the callback sees, and the
        Nones after the last one: what Lark's `maybe_create_child_filter` decides."""
        expansion = rule.expansion
        nones_before = [0] * (len(expansion) + 1)
        slot = 0
        # Lark writes where `[x]` was left out as a flag per symbol of the longer
        # expansion: True where an absent optional part stood.
        for absent in (rule.options.empty_indices if self.placeholders else ()):
            if absent:
                nones_before[slot] += 1
            else:
                slot += 1
        plan, pending = [], 0
        for index, symbol in enumerate(expansion):
            pending += nones_before[index]
            if symbol.is_term:
                if symbol.filter_out and not rule.options.keep_all_tokens:
                    continue
                how = _KEEP
            elif symbol.name.startswith("_"):
                how = _SPLICE_LIST if symbol.name in self.as_list else _SPLICE_TREE
            else:
                how = _KEEP
            plan.append((index, how, pending))
            pending = 0
        return plan, pending + nones_before[len(expansion)]

    def callback(self, rule) -> Callable[[list], Any]:
        # Found as Lark's `ParseTreeBuilder.create_callback` finds it.
        name = rule.alias or rule.options.template_source or rule.origin.name
        method = getattr(self.transformer, name, None)
        if method is None:
            default = getattr(self.transformer, "__default__", None)
            if default is None:
                tree_class = self.tree_class
                return lambda children: tree_class(name, children)
            return lambda children: default(name, children, None)
        wrapper = getattr(method, "visit_wrapper", None)
        if wrapper is not None:
            return lambda children: wrapper(method, name, children, None)
        if isinstance(self.transformer, Transformer_InPlace):
            return lambda children: method(Tree(name, children))
        return method


def _inlined_as_lists(rules, transformer: Any, starts: list[str]) -> frozenset[str]:
    """The `_rule`s whose value can be the list of its children instead of a tree.

    A `_rule`'s value is only ever spliced into its parent's children, so the tree
    Lark builds around them is thrown away at once; unless the transformer would
    see it (its own callback or `__default__`), or `?_rule` could hand on a child.
    """
    default = getattr(type(transformer), "__default__", Transformer.__default__)
    if default is not Transformer.__default__:
        return frozenset()
    origins = {rule.origin.name for rule in rules}
    single = {rule.origin.name for rule in rules if rule.options.expand1}
    return frozenset(name for name in origins
                     if name.startswith("_") and name not in single and name not in starts
                     and getattr(transformer, name, None) is None)


def _builder(plan: list[tuple[int, int, int]], trailing: int, size: int, single: bool,
             callback: Callable | None) -> Callable[[list], Any]:
    """children → value, for one rule: shape the children, then call back. The two
    shapes most reductions have, some children picked and a list grown by more,
    get functions of their own (picking with `itemgetter`, in C)."""
    keeps = tuple(index for index, how, _ in plan if how == _KEEP)
    plain = not trailing and not any(nones for _, _, nones in plan)
    if plain and len(keeps) == len(plan):
        return _picking(keeps, size, single, callback)
    if plain and plan[0][:2] == (0, _SPLICE_LIST) and len(keeps) == len(plan) - 1:
        return _growing(keeps, single, callback)
    return _shaping(tuple(plan), trailing, single, callback)


def _picking(keeps: tuple[int, ...], size: int, single: bool,
             callback: Callable | None) -> Callable[[list], Any]:
    if keeps == tuple(range(size)):  # all of them, as they are
        if callback is None:
            return _same
        if single:
            return lambda children: children[0] if len(children) == 1 else callback(children)
        return callback
    if len(keeps) == 1:
        [keep] = keeps
        if single:  # always the one child: handed on
            return lambda children: children[keep]
        if callback is None:
            return lambda children: [children[keep]]
        return lambda children: callback([children[keep]])
    if not keeps:
        return (lambda children: []) if callback is None else (lambda children: callback([]))
    pick = itemgetter(*keeps)  # two or more: never a single child to hand on
    if callback is None:
        return lambda children: list(pick(children))
    return lambda children: callback(list(pick(children)))


def _growing(keeps: tuple[int, ...], single: bool,
             callback: Callable | None) -> Callable[[list], Any]:
    """A `_rule`'s list first, then children: the list grows in place, as in Lark (a
    left-recursive list is never shared in LALR)."""
    if not keeps:
        def grown(children: list) -> list:
            return children[0]
    elif len(keeps) == 1:
        [keep] = keeps

        def grown(children: list) -> list:
            out = children[0]
            out.append(children[keep])
            return out
    else:
        pick = itemgetter(*keeps)

        def grown(children: list) -> list:
            out = children[0]
            out += pick(children)
            return out
    return _then(grown, single, callback)


def _shaping(plan: tuple[tuple[int, int, int], ...], trailing: int, single: bool,
             callback: Callable | None) -> Callable[[list], Any]:
    padding = [None] * trailing

    def shaped(children: list) -> list:
        out: list = []
        for index, how, nones in plan:
            if nones:
                out += [None] * nones
            if how == _KEEP:
                out.append(children[index])
                continue
            inner = children[index] if how == _SPLICE_LIST else children[index].children
            if out:
                out += inner
            else:  # a left-recursive list grows in place, as in Lark (LALR never shares it)
                out = inner
        if padding:
            out += padding
        return out

    return _then(shaped, single, callback)


def _then(shape: Callable[[list], list], single: bool,
          callback: Callable | None) -> Callable[[list], Any]:
    if callback is None:
        return shape
    if single:
        def handed_on(children: list) -> Any:
            out = shape(children)
            return out[0] if len(out) == 1 else callback(out)
        return handed_on
    return lambda children: callback(shape(children))


def _same(children: list) -> list:
    return children


def _refuse_terminal_callbacks(lark: Lark, transformer: Any) -> None:
    # Lark would call these on every shifted token; this driver has no place for them.
    named = [t.name for t in lark.terminals if hasattr(transformer, t.name)]
    if lark.options.lexer_callbacks or named:
        raise ValueError(f"jacc.lalr: terminal callbacks are not supported: {named}")
