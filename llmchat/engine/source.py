"""The seam between the faces and a model: `ModelSource`, something that turns prompt ids into
`TokenEvent`s. `LocalModel` is the engine in this process; `serve.client.RemoteModel` is a warm
`llmchat serve`; a remote inference engine is one more implementation. `ask`, `next`, `chat`
(the session) and the server use only this protocol, so renderers, `--json` and saved
conversations never know which one answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

from ..prompt import build as prompting
from ..prompt.build import Prompt, PromptModel
from .events import Distribution, Finished, TokenEvent
from .sampling import SamplingParams

if TYPE_CHECKING:
    from ..model.load import LoadedModel
    from ..model.progress import Progress
    from .score import Score


class ModelSource(PromptModel, Protocol):
    """A model that answers prompts. Besides what `PromptModel` has (spec, tokenizer, family,
    context_length): `weights` and `backend` label how it computes (for --json and /model)."""

    weights: str
    backend: str

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        """A conversation as the model receives it: the chat template applied, tokenized."""

    def prepare(self, text: str, *, system: str | None, raw: bool, truncate: bool, max_new_tokens: int,
                keep: int = 0) -> Prompt:
        """A one-turn prompt (`prompt.build.prepare`): what `ask` sends; --truncate never cuts the
        last `keep` characters."""

    def generate(self, ids: list[int], params: SamplingParams, *, alternatives: int = 5, stop: Iterable[str] = (),
                 should_stop: Callable[[], bool] | None = None,
                 on_prefill: Callable[[int, int], None] | None = None,
                 continues: Iterable[int] = ()) -> Iterator[TokenEvent | Finished]:
        """The answer to `ids`, token by token, then one Finished (see engine.loop.generate);
        `on_prefill(done, total)` reports the prompt's progress where the source knows it;
        `continues`: trailing prompt ids whose text the caller showed (see engine.loop.generate)."""

    def next_distribution(self, ids: list[int], k: int = 10) -> Distribution:
        """The model distribution over the token after `ids`."""

    def score(self, ids: list[int], start: int, *, alternatives: int = 5, window: int | None = None,
              progress: Progress | None = None) -> Score:
        """ids[start:] scored token by token under the model distribution (engine.score)."""

    def forget(self) -> None:
        """Drop any state kept between generations (the prompt cache): a new conversation."""


class LocalModel:
    """A ModelSource on a LoadedModel in this process. With `reuse` (a chat, the server) it keeps
    a PromptCache, so consecutive generations prefill only what is new after their common prefix;
    without it (`ask`, each line of a batch) every call starts fresh."""

    def __init__(self, loaded: LoadedModel, *, reuse: bool = True):
        from .loop import PromptCache

        self.loaded = loaded
        self.cache = PromptCache() if reuse else None
        self.spec, self.tokenizer, self.family = loaded.spec, loaded.tokenizer, loaded.family
        self.context_length, self.weights, self.backend = loaded.context_length, loaded.quant, loaded.backend
        self.device = loaded.device

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        return prompting.chat_ids(self, messages, add_generation_prompt)

    def prepare(self, text: str, *, system: str | None, raw: bool, truncate: bool, max_new_tokens: int,
                keep: int = 0) -> Prompt:
        return prompting.prepare(self, text, system=system, raw=raw, truncate=truncate, max_new_tokens=max_new_tokens,
                                 keep=keep)

    def generate(self, ids: list[int], params: SamplingParams, *, alternatives: int = 5, stop: Iterable[str] = (),
                 should_stop: Callable[[], bool] | None = None,
                 on_prefill: Callable[[int, int], None] | None = None,
                 continues: Iterable[int] = ()) -> Iterator[TokenEvent | Finished]:
        from .loop import generate

        return generate(self.loaded, ids, params, alternatives=alternatives, stop=stop, cache=self.cache,
                        should_stop=should_stop, on_prefill=on_prefill, continues=continues)

    def next_distribution(self, ids: list[int], k: int = 10) -> Distribution:
        from .loop import next_distribution

        return next_distribution(self.loaded, ids, k)

    def score(self, ids: list[int], start: int, *, alternatives: int = 5, window: int | None = None,
              progress: Progress | None = None) -> Score:
        from ..model.progress import SILENT
        from .score import score

        return score(self.loaded, ids, start, alternatives=alternatives, window=window, progress=progress or SILENT)

    def forget(self) -> None:
        if self.cache is not None:
            self.cache.reset()
