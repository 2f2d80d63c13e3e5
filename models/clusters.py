"""Online claim clustering: which posts are about the same claim.

One pass over posts in arrival order; every post that is not late (1.) lands in exactly one
cluster:

1. a re-delivered post id returns its earlier assignment and changes nothing; a post
   older than ``ttl_s`` behind the newest event time seen (the watermark) is *late*: it
   changes nothing either and joins no cluster (``how == "late"``), because the clusterer
   has forgotten that stretch of time and cannot tell a new post from a re-delivery of a
   forgotten one, which would count twice;
2. a reply, repost or quote joins the cluster of the post it answers (an engagement
   that arrives before its parent reserves the parent's place: the parent joins that
   cluster when it comes);
3. a new root joins the nearest active cluster when it is a near-duplicate (MinHash
   LSH over character 5-grams, ``models.minhash``) or semantically close (cosine of sentence
   embeddings against cluster centroids, candidates from random-hyperplane LSH);
4. otherwise it opens a cluster whose id derives from its first post id (stable).

Per-post cost does not grow with the number of active clusters: both lookups are
hash-bucket probes with a capped candidate list. Clusters idle for ``ttl_s`` of event
time expire, before the post that moves event time past them is placed, and release their
members; a long-lived cluster forgets member ids older
than ``ttl_s`` (a re-delivery older than that is late, see 1.) and the accounts silent in it
for ``ttl_s`` (one that posts there again counts as a new account), so memory is bounded by
the posts of the active window, not by the length of the event. ``max_clusters`` and
``max_posts`` cap that window in absolute terms (a firehose of 1,000 posts/s puts 10.8
million posts in a 3 h window): past the first the least recently touched cluster expires
as if idle; past the second the oldest remembered post ids are forgotten first (a live
cluster's first roots stay, as under the TTL). Member lists are
ordered dicts: forgetting the oldest is O(1), where a plain dict's ``next(iter(d))``
after many deletions at its head walks the holes they leave (80 µs per post measured at
500,000 members).
The clusterer is single-threaded; it holds no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.embed import TextEmbedder, embed_key
from models.minhash import MinHasher, MinHashLSH
from models.race import has_denial_cue
from models.text import hashtags

ENGAGEMENT_KINDS = ("reply", "repost", "quote")
KEPT_ROOTS = 64  # per cluster: ids of the first roots are kept while the cluster lives
SUMMARY_ROOTS = 16  # per cluster: the first roots whose texts may become its summary
SUMMARY_CHARS = 280  # characters kept of each such text
MAX_KEPT_CYCLED = 1024  # first roots passed over per forgetting call past ``max_posts``
_WORD = re.compile(r"[^\W\d_][\w'-]+")
_MENTION = re.compile(r"@[\w.\-@]+")
# words that say nothing about a claim (nl + en); kept short on purpose
STOPWORDS = frozenset(
    """
de het een en van in op te dat die is er niet met voor zijn aan ook als bij maar om dan
nog wel al naar uit of was hij zij ze we wij je jij ik mijn me mij ons onze hun hem haar
dit deze wat wie waar hoe kan kun wordt worden werd heeft hebben had door over tot
zo nu hier daar heel echt gewoon even rt via
the a an and or of in on at to is are was were be been it its this that these those
for with from by as not no but if so just all any can could will would there their
they them we our you your he she his her my me i has have had do does did than then
""".split()  # noqa: SIM905
)
# function words of 4+ letters (nl + en, folded as claim_words folds them; the STOPWORDS
# are gone already) that :func:`anchor_words` must not count as a shared place or object:
# "alles" let "Bommelding bij Amsterdam Centraal, ze zijn alles aan het ontruimen" join
# "Geen tram meer richting vondelpark, alles staat vast" (cosine 0.89) and pull the demo's
# planted rumour into a cluster of tram and crowding chatter
ANCHOR_STOPWORDS = frozenset(
    """
alles iets niets niks iemand niemand iedereen allemaal elke ieder iedere welke wanneer
waarom omdat want terwijl sinds zonder onder tussen tegen meer meest minder veel weinig
weer helemaal eigenlijk misschien toch altijd nooit ergens overal nergens andere anders
zelf zelfs samen alleen jouw jullie zich moet moeten mogen kunnen konden zullen zouden
willen wilde hadden werden gaat gaan ging komt komen kwam doet doen deed staat staan
stond zegt zeggen zien ziet laat laten maakt maken krijg krijgt weet weten denk denkt
vind vindt here what which whom whose when where having being done doing shall should
might must none nothing some each every both either neither else because though although
while until unless since after before without about into onto under between through
during against among down again further once only also very more most much many less
least still already soon ever back away well don't doesn't didn't isn't aren't wasn't
weren't can't couldn't won't wouldn't shouldn't hasn't haven't hadn't you're we're
they're let's here's there's that's what's who's someone anyone everyone something
anything everything other another same such really like going gonna yours theirs ours
mine know think want says said make made getting tell told
""".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    num_perm: int = 64
    lsh_bands: int = 16  # 16 bands x 4 rows: P(candidate) ~ 0.5 at Jaccard 0.5
    shingle_chars: int = 5
    near_duplicate_jaccard: float = 0.5
    semantic_cosine: float = 0.88  # e5-small: paraphrases >= 0.90, unrelated <= 0.87
    ann_tables: int = 8
    ann_bits: int = 10
    max_bucket: int = 32  # most recent clusters probed per bucket
    max_indexed_roots: int = 8  # MinHash entries per cluster
    min_claim_words: int = 3  # shorter roots ("wow", "!!!") never join by similarity
    ttl_s: float = 3 * 3600.0  # event-time idle time before a cluster expires
    # post ids remembered at most, over all clusters (oldest forgotten first; live clusters'
    # first roots excepted): bounds memory when the TTL window holds more posts than that
    # (~1.4 KB per post in the rumour stage)
    max_posts: int = 2_000_000
    # live clusters at most: past it the least recently touched one expires as if idle
    max_clusters: int = 300_000
    velocity_window_s: float = 300.0
    samples: int = 5
    top_terms: int = 8
    top_spreaders: int = 5
    seed: int = 1


@dataclass(frozen=True, slots=True)
class ClusterInput:
    """One post as the clusterer sees it (the caller pseudonymises ``author``)."""

    id: str
    text: str
    ts: float  # event time, epoch seconds
    kind: str = "post"  # post | reply | repost | quote
    parent: str | None = None
    author: str | None = None
    followers: int = 0
    verified: bool = False
    official: bool = False
    stance: str | None = None
    claim_prob: float | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    post_id: str
    cluster_id: str
    how: str  # new | thread | near_duplicate | semantic | redelivered | late
    size: int = 0  # the cluster's size right after this post joined (0 when late)

    @property
    def new_cluster(self) -> bool:
        return self.how == "new"

    @property
    def redelivered(self) -> bool:
        return self.how == "redelivered"

    @property
    def late(self) -> bool:
        """Older than the TTL behind the watermark: in no cluster, nothing changed."""
        return self.how == "late"


@dataclass(slots=True)
class Cluster:
    id: str
    first_seen: float
    last_seen: float
    # the text of the root the most direct replies, reposts and quotes went to among the
    # first SUMMARY_ROOTS that state something rather than deny it (the first such root on
    # a tie; the first root's text until one has engagement): the claim the cluster is about
    summary: str = ""
    summary_root: str | None = None
    root_texts: dict[str, str] = field(default_factory=dict)
    root_engagement: Counter[str] = field(default_factory=Counter)
    size: int = 0
    roots: int = 0
    replies: int = 0
    reposts: int = 0
    quotes: int = 0
    stance: Counter[str] = field(default_factory=Counter)
    # author -> event time of their latest post here, least recently posting first; authors
    # silent here for ``ttl_s`` are forgotten with the members (counted in authors_forgotten)
    authors: OrderedDict[str, float] = field(default_factory=OrderedDict)
    authors_forgotten: int = 0
    reach: int = 0
    verified_posts: int = 0
    official_posts: int = 0
    minutes: dict[int, int] = field(default_factory=dict)
    peak_velocity: float = 0.0
    claim_sum: float = 0.0
    claim_n: int = 0
    samples: list[str] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)
    spreaders: Counter[str] = field(default_factory=Counter)
    # id -> event time, arrival order (an OrderedDict: the oldest go first, in O(1))
    members: OrderedDict[str, float] = field(default_factory=OrderedDict)
    forgotten: int = 0  # member ids dropped after ttl_s or max_posts (still counted in size)
    kept_roots: dict[str, None] = field(default_factory=dict)  # first roots: never forgotten
    official_root: bool = False  # opened by an official account's post (its statement)
    anchor_terms: set[str] = field(default_factory=set)  # content words of the first roots
    reserved: list[str] = field(default_factory=list)  # parents not seen yet
    centroid: np.ndarray | None = None
    n_vectors: int = 0
    ann_keys: tuple[int, ...] = ()
    lsh_keys: list[str] = field(default_factory=list)
    # written by the rumour tracker
    score: float = 0.0
    # the score's logit in models.rumour.DRIVERS order (clusters of two posts or more, or
    # flagged; empty otherwise)
    drivers: tuple[float, ...] = ()
    state: str = "emerging"
    flagged_at: float | None = None

    @property
    def distinct_authors(self) -> int:
        """Distinct accounts that posted here; one that falls silent here for ``ttl_s`` and
        then posts again counts twice (as its reach does)."""
        return len(self.authors) + self.authors_forgotten

    @property
    def claim_prob(self) -> float:
        return self.claim_sum / self.claim_n if self.claim_n else 0.0

    def velocity(self, now: float, window_s: float, offset_s: float = 0.0) -> float:
        """Posts a minute over ``(now - offset - window, now - offset]``."""
        hi = int((now - offset_s) // 60)
        lo = int((now - offset_s - window_s) // 60)
        minutes = self.minutes
        if hi - lo < len(minutes):  # look up the window's minutes (called once per post)
            n = sum(minutes.get(m, 0) for m in range(lo + 1, hi + 1))
        else:
            n = sum(c for m, c in minutes.items() if lo < m <= hi)
        return n / max(window_s / 60.0, 1e-9)

    def top_terms(self, k: int) -> list[str]:
        return [t for t, _ in self.terms.most_common(k)]

    def top_spreaders(self, k: int) -> list[str]:
        return [a for a, _ in self.spreaders.most_common(k)]


def cluster_id_for(post_id: str) -> str:
    return "c" + hashlib.blake2b(post_id.encode("utf-8"), digest_size=6).hexdigest()


def claim_words(text: str) -> list[str]:
    """Content words of a post (folded; no URLs, mentions or stop words)."""
    key = _MENTION.sub(" ", embed_key(text))
    return [w for w in _WORD.findall(key) if w not in STOPWORDS and len(w) > 1]


def anchor_words(text: str) -> set[str]:
    """Content words of 4+ letters that are not hashtags (event hashtags are shared by
    everything) nor function words (:data:`ANCHOR_STOPWORDS`)."""
    tags = set(hashtags(text))
    return {w for w in claim_words(text)
            if len(w) >= 4 and w not in tags and w not in ANCHOR_STOPWORDS}


def shingles(text: str, n: int) -> set[bytes]:
    key = " ".join(_MENTION.sub(" ", embed_key(text)).split())
    if len(key) <= n:
        return {key.encode("utf-8")} if key else set()
    return {key[i:i + n].encode("utf-8") for i in range(len(key) - n + 1)}


class OnlineClusterer:
    def __init__(self, settings: ClusterSettings | None = None,
                 embedder: TextEmbedder | None = None) -> None:
        self.settings = s = settings or ClusterSettings()
        self.embedder = embedder
        self.clusters: OrderedDict[str, Cluster] = OrderedDict()  # least recently touched first
        # post id -> cluster id, oldest remembered first (for ``max_posts``)
        self._post_cluster: OrderedDict[str, str] = OrderedDict()
        self._hasher = MinHasher(s.num_perm, s.seed)
        self._lsh = MinHashLSH(s.num_perm, bands=s.lsh_bands)
        self._buckets: list[dict[int, dict[str, None]]] = [{} for _ in range(s.ann_tables)]
        self._planes: np.ndarray | None = None
        if embedder is not None:
            rng = np.random.default_rng(s.seed)
            self._planes = rng.standard_normal((s.ann_tables * s.ann_bits, embedder.dim)).astype(
                np.float32)
        self._weights = (1 << np.arange(s.ann_bits, dtype=np.int64))
        self.watermark = 0.0
        self.expired_total = 0
        self.late_total = 0  # posts refused as late (older than the TTL behind the watermark)
        # clusters that add() expired, handed out by the next expire() call; capped at the
        # peak number of active clusters so memory stays bounded if nobody calls expire()
        self._expired_pending: list[Cluster] = []
        self._peak_active = 0
        # text -> MinHash signature while one add_batch() runs: a root's signature is needed
        # by the embedding pre-pass, its placement and its indexing (and reposts repeat texts)
        self._signatures: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ lookups

    def cluster_of(self, post_id: str) -> Cluster | None:
        cid = self._post_cluster.get(post_id)
        return self.clusters.get(cid) if cid else None

    def is_late(self, ts: float) -> bool:
        """Event time ``ts`` is more than ``ttl_s`` behind the watermark: a post from then
        joins no cluster (see the module docstring)."""
        return ts < self.watermark - self.settings.ttl_s

    def __len__(self) -> int:
        return len(self.clusters)

    @property
    def tracked_posts(self) -> int:
        return len(self._post_cluster)

    # ------------------------------------------------------------------ ingest

    def add_batch(self, posts: Sequence[ClusterInput]) -> list[Assignment]:
        """Assign posts in order. Embeddings are computed in one batch for the roots
        that the near-duplicate index cannot place (results equal :meth:`add` one by
        one with the same embedder), unless the embedder says batching does not pay."""
        self._signatures = {}
        try:
            vectors: dict[str, np.ndarray] = {}
            # the pre-pass (a near-duplicate probe per root) pays off for a model whose
            # batches are cheaper than single texts; a model-free embedder (``batches``
            # False) embeds in place, which gives the same clusters
            if self.embedder is not None and getattr(self.embedder, "batches", True):
                need = [p for p in posts if self._needs_vector(p)]
                if need:
                    texts: dict[str, None] = {}
                    for p in need:
                        texts.setdefault(p.text, None)
                    vecs = self.embedder.embed(list(texts))
                    by_text = dict(zip(texts, vecs, strict=True))
                    vectors = {p.id: by_text[p.text] for p in need}
            return [self.add(p, vectors.get(p.id)) for p in posts]
        finally:
            self._signatures = None

    def _needs_vector(self, p: ClusterInput) -> bool:
        if p.id in self._post_cluster or (p.parent and p.kind in ENGAGEMENT_KINDS) \
                or self.is_late(p.ts):
            return False
        if len(claim_words(p.text)) < self.settings.min_claim_words:
            return False
        return self._near_duplicate(self._minhash(p.text)) is None

    def add(self, post: ClusterInput, vector: np.ndarray | None = None) -> Assignment:
        known = self._post_cluster.get(post.id)
        if known is not None and known in self.clusters:
            c = self.clusters[known]
            if post.id in c.members or post.id in c.kept_roots:
                return Assignment(post.id, known, "redelivered", c.size)
        if self.is_late(post.ts):
            self.late_total += 1
            return Assignment(post.id, "", "late", 0)
        if post.ts > self.watermark:
            self.watermark = post.ts
            # before placing: a cluster idle for the TTL at this post's time is gone, so a
            # matching post after a quiet spell opens a new cluster instead of reviving it
            # (until 2026-12-08 expiry ran after placement, and whether an idle cluster came
            # back depended on whether any other post had moved event time first)
            self._hold_expired(self._drop_idle(post.ts))
            known = self._post_cluster.get(post.id)
        if known is not None and known in self.clusters:  # reserved by an early engagement
            cluster, how, vector = self.clusters[known], "thread", None
        elif post.parent and post.kind in ENGAGEMENT_KINDS:
            vector = None
            cid = self._post_cluster.get(post.parent)
            if cid is not None and cid in self.clusters:
                cluster, how = self.clusters[cid], "thread"
            elif (own := self.clusters.get(cluster_id_for(post.parent))) is not None:
                # the parent's own cluster is live though the parent itself was forgotten
                # (a late or re-delivered reply after its members aged out): its thread
                cluster, how = own, "thread"
            else:
                cluster = self._open(post.parent, post.ts)  # parent not seen (yet)
                self._post_cluster[post.parent] = cluster.id
                cluster.reserved.append(post.parent)
                how = "new"
        elif (own := self.clusters.get(cluster_id_for(post.id))) is not None:
            # this post opened (or was the awaited parent of) a live cluster whose memory of
            # it aged out: it belongs there, not in a sibling cluster
            cluster, how, vector = own, "thread", None
        else:
            # the vector that placed the root (None for near-duplicates and short texts), so
            # add() alone and add_batch() anchor the same clusters
            cluster, how, vector = self._place_root(post, vector)
        self._join(cluster, post, vector, how)
        size = cluster.size
        self._peak_active = max(self._peak_active, len(self.clusters))
        self._hold_expired(self._drop_idle(self.watermark))  # past max_clusters
        return Assignment(post.id, cluster.id, how, size)

    def _hold_expired(self, dropped: list[Cluster]) -> None:
        """Keep clusters that :meth:`add` expired for the next :meth:`expire` call."""
        if dropped:
            pending = self._expired_pending
            pending.extend(dropped)
            cap = max(1024, self._peak_active)
            if len(pending) > cap:
                del pending[: len(pending) - cap]

    def _place_root(self, post: ClusterInput, vector: np.ndarray | None,
                    ) -> tuple[Cluster, str, np.ndarray | None]:
        s = self.settings
        words = claim_words(post.text)
        if post.official:  # an official statement is its own cluster (its rebuttal race)
            cluster = self._open(post.id, post.ts)
            cluster.official_root = True
            return cluster, "new", None
        if len(words) >= s.min_claim_words:
            mh = self._minhash(post.text)
            cid = self._near_duplicate(mh)
            if cid is not None:
                return self.clusters[cid], "near_duplicate", None
            if vector is None and self.embedder is not None:
                vector = self.embedder.embed([post.text])[0]
            if vector is not None:
                cid = self._nearest(vector, anchor_words(post.text))
                if cid is not None:
                    return self.clusters[cid], "semantic", vector
            return self._open(post.id, post.ts), "new", vector
        return self._open(post.id, post.ts), "new", None

    def _open(self, first_id: str, ts: float) -> Cluster:
        cid = cluster_id_for(first_id)
        # an id collision with a live cluster (astronomically rare) gets a suffix
        n = 1
        while cid in self.clusters:
            cid = f"{cluster_id_for(first_id)}-{n}"
            n += 1
        cluster = Cluster(id=cid, first_seen=ts, last_seen=ts)
        self.clusters[cid] = cluster
        return cluster

    def _join(self, c: Cluster, p: ClusterInput, vector: np.ndarray | None, how: str) -> None:
        s = self.settings
        remembered = self._post_cluster
        if p.id in remembered:  # a parent reserved by an early engagement: remembered as new
            remembered.move_to_end(p.id)
        remembered[p.id] = c.id
        c.members[p.id] = p.ts
        if not (p.parent and p.kind in ENGAGEMENT_KINDS) and len(c.kept_roots) < KEPT_ROOTS:
            c.kept_roots[p.id] = None  # late replies to the claim still find their cluster
        self._forget_old_members(c)
        if len(remembered) > s.max_posts:
            self._forget_oldest(len(remembered) - s.max_posts)
        c.size += 1
        c.first_seen = min(c.first_seen, p.ts)
        c.last_seen = max(c.last_seen, p.ts)
        self.clusters.move_to_end(c.id)
        minute = int(p.ts // 60)
        c.minutes[minute] = c.minutes.get(minute, 0) + 1
        horizon = int((self.watermark - 2 * s.velocity_window_s) // 60)
        if len(c.minutes) > 4 * max(int(s.velocity_window_s // 60), 1):
            c.minutes = {m: n for m, n in c.minutes.items() if m > horizon}
        c.peak_velocity = max(c.peak_velocity, c.velocity(self.watermark, s.velocity_window_s))
        is_root = not (p.parent and p.kind in ENGAGEMENT_KINDS)
        if p.kind == "reply" and not is_root:
            c.replies += 1
        elif p.kind == "repost" and not is_root:
            c.reposts += 1
        elif p.kind == "quote" and not is_root:
            c.quotes += 1
        else:
            c.roots += 1
        if p.stance:
            c.stance[p.stance] += 1
        if p.author is not None:
            authors = c.authors
            last = authors.get(p.author)
            if last is None:
                c.reach += max(p.followers, 0)
                authors[p.author] = p.ts
            else:
                authors.move_to_end(p.author)
                authors[p.author] = max(last, p.ts)
        if p.author is not None and not is_root and p.kind in ("repost", "quote"):
            c.spreaders[p.author] += 1
            if len(c.spreaders) > 8 * s.top_spreaders:
                c.spreaders = Counter(dict(c.spreaders.most_common(2 * s.top_spreaders)))
        c.verified_posts += int(p.verified)
        c.official_posts += int(p.official)
        if is_root or p.kind == "quote":
            words = claim_words(p.text)
            if p.claim_prob is not None and is_root:
                c.claim_sum += p.claim_prob
                c.claim_n += 1
            c.terms.update(dict.fromkeys(words, 1))
            if len(c.terms) > 16 * s.top_terms:
                c.terms = Counter(dict(c.terms.most_common(4 * s.top_terms)))
            if is_root and words and not p.official and len(c.root_texts) < SUMMARY_ROOTS \
                    and not has_denial_cue(p.text, hedges=False):  # a rebuttal is no claim
                c.root_texts[p.id] = p.text[:SUMMARY_CHARS]
            if not c.summary and p.kind != "repost" and words:
                c.summary = p.text
                c.summary_root = p.id if p.id in c.root_texts else None
            if is_root and c.roots <= 3 and not p.official:
                c.anchor_terms.update(anchor_words(p.text))
            if is_root and len(c.lsh_keys) < s.max_indexed_roots \
                    and len(words) >= s.min_claim_words and not p.official:
                mh = self._minhash(p.text)
                if p.id not in self._lsh:
                    self._lsh.insert(p.id, mh)
                    c.lsh_keys.append(p.id)
            if is_root and vector is not None and not p.official:
                self._update_centroid(c, vector)
        if not is_root and p.parent in c.root_texts:
            self._engage(c, p.parent)
        if len(c.samples) < s.samples and p.kind != "repost":
            c.samples.append(p.id)

    @staticmethod
    def _engage(c: Cluster, root: str) -> None:
        """One more direct reply, repost or quote of the kept root ``root``: the summary
        moves to it once it has more of them than the current summary's root. A chatter
        root that opened the cluster ("Just arrived at Leidsestraat, where is everyone")
        then gives way to the claim people spread ("Shots fired at Leidsestraat")."""
        counts = c.root_engagement
        counts[root] += 1
        current = c.summary_root
        if root != current and counts[root] > (counts[current] if current else 0):
            c.summary_root = root
            c.summary = c.root_texts[root]

    # ------------------------------------------------------------------ indexes

    def _minhash(self, text: str) -> np.ndarray:
        memo = self._signatures
        if memo is not None and (sig := memo.get(text)) is not None:
            return sig
        sig = self._hasher.signature(shingles(text, self.settings.shingle_chars))
        if memo is not None:
            memo[text] = sig
        return sig

    def _near_duplicate(self, mh: np.ndarray) -> str | None:
        """The cluster of the most similar candidate at or above the Jaccard threshold (ties:
        the larger cluster id). The candidates' signatures are compared in one array
        operation: as the active window fills, the LSH buckets hold more candidates."""
        keys = self._lsh.query(mh, self.settings.max_bucket)
        if not keys:
            return None
        same = np.count_nonzero(self._lsh.signatures(keys) == mh, axis=1)
        # only the candidates at or above the threshold are looked up (most are below it)
        need = int(self.settings.near_duplicate_jaccard * len(mh))  # a lower bound
        best: tuple[float, str] | None = None
        for i in np.flatnonzero(same >= need).tolist():
            cid = self._post_cluster.get(keys[i])
            if cid is None or cid not in self.clusters:
                continue
            j = int(same[i]) / len(mh)  # = jaccard(mh, other)
            if j >= self.settings.near_duplicate_jaccard and (best is None or (j, cid) > best):
                best = (j, cid)
        return best[1] if best else None

    def _ann_keys(self, vector: np.ndarray) -> tuple[int, ...]:
        if self._planes is None:  # pragma: no cover - callers check
            raise RuntimeError("no embedder")
        s = self.settings
        bits = (self._planes @ vector > 0).reshape(s.ann_tables, s.ann_bits)
        return tuple(int(k) for k in bits.astype(np.int64) @ self._weights)

    def _nearest(self, vector: np.ndarray, words: set[str]) -> str | None:
        """The closest anchor above ``semantic_cosine`` among LSH candidates that also
        share a content word with the cluster's first roots (a place, an object: keeps
        generic festival chatter from merging on embedding similarity alone)."""
        if self._planes is None:
            return None
        s = self.settings
        seen: dict[str, None] = {}
        for table, key in enumerate(self._ann_keys(vector)):
            bucket = self._buckets[table].get(key)
            if not bucket:
                continue
            for n, cid in enumerate(reversed(bucket)):
                if n >= s.max_bucket:
                    break
                seen.setdefault(cid, None)
        best: tuple[float, str] | None = None
        for cid in seen:
            c = self.clusters.get(cid)
            if c is None or c.centroid is None or not (words & c.anchor_terms):
                continue
            cos = float(c.centroid @ vector)
            if cos >= s.semantic_cosine and (best is None or (cos, cid) > best):
                best = (cos, cid)
        return best[1] if best else None

    def _update_centroid(self, c: Cluster, vector: np.ndarray) -> None:
        """The cluster's anchor is the vector of its first embedded root: later roots are
        compared with the claim itself, so a cluster cannot drift into a generic topic by
        chaining (a running mean of festival chatter ends up close to all chatter)."""
        if self._planes is None or c.centroid is not None:
            return
        c.centroid = vector.astype(np.float32, copy=True)
        c.n_vectors = 1
        keys = self._ann_keys(c.centroid)
        for table, key in enumerate(keys):
            self._buckets[table].setdefault(key, {})[c.id] = None
        c.ann_keys = keys

    def _unindex_ann(self, c: Cluster) -> None:
        for table, key in enumerate(c.ann_keys):
            bucket = self._buckets[table].get(key)
            if bucket is not None:
                bucket.pop(c.id, None)
                if not bucket:
                    del self._buckets[table][key]
        c.ann_keys = ()

    # ------------------------------------------------------------------ expiry

    def expire(self, now: float) -> list[Cluster]:
        """Drop clusters idle for ``ttl_s`` of event time (oldest touched first). Returns
        them together with the clusters that :meth:`add` expired since the last call (add
        expires as it goes, so memory stays bounded; callers learn of it here)."""
        out = self._expired_pending
        self._expired_pending = []
        out.extend(self._drop_idle(now))
        return out

    def _drop_idle(self, now: float) -> list[Cluster]:
        """Expire the least recently touched clusters while they are idle for ``ttl_s`` or
        there are more than ``max_clusters``."""
        out: list[Cluster] = []
        limit = now - self.settings.ttl_s
        cap = self.settings.max_clusters
        while self.clusters:
            c = next(iter(self.clusters.values()))
            if c.last_seen >= limit and len(self.clusters) <= cap:
                break
            self.clusters.popitem(last=False)
            self._release(c)
            out.append(c)
        self.expired_total += len(out)
        return out

    def _forget_old_members(self, c: Cluster) -> None:
        """Drop member ids that arrived more than ``ttl_s`` of event time ago (members are
        in arrival order, close to event-time order; stops at the first recent one)."""
        limit = self.watermark - self.settings.ttl_s
        members = c.members
        while members:
            pid, ts = next(iter(members.items()))
            if ts >= limit:
                break
            del members[pid]
            if pid in c.kept_roots:
                continue
            c.forgotten += 1
            if self._post_cluster.get(pid) == c.id:
                del self._post_cluster[pid]
        self._forget_old_authors(c, limit)

    @staticmethod
    def _forget_old_authors(c: Cluster, limit: float) -> None:
        """Drop authors whose latest post here is older than ``limit``, and the least
        recently posting past ``len(members) + KEPT_ROOTS`` (so ``max_posts`` bounds them
        too). Without this a long-lived cluster kept every account that ever posted in it:
        867,484 author keys after the soak's 1M generated posts, against 35,771 remembered
        members."""
        authors = c.authors
        cap = len(c.members) + KEPT_ROOTS
        while authors:
            author, ts = next(iter(authors.items()))
            if ts >= limit and len(authors) <= cap:
                break
            del authors[author]
            c.authors_forgotten += 1

    def _forget_oldest(self, n: int) -> None:
        """Past ``max_posts``: forget the ``n`` post ids remembered longest (a reserved parent
        too). A live cluster's first roots stay (at most ``KEPT_ROOTS`` each, as under the
        TTL): they go to the young end, so a hot claim keeps its replies. At most
        ``MAX_KEPT_CYCLED`` of them are passed over per call; past that (a window of first
        roots only) they are forgotten too, so a post never costs a walk of the whole map.
        Counts stay; a re-delivery of a forgotten post counts as new."""
        remembered = self._post_cluster
        cycled = 0
        while n > 0 and remembered:
            pid, cid = remembered.popitem(last=False)
            c = self.clusters.get(cid)
            if c is not None and pid in c.kept_roots:
                if cycled < MAX_KEPT_CYCLED:
                    remembered[pid] = cid
                    cycled += 1
                    continue
                del c.kept_roots[pid]
            n -= 1
            if c is not None and c.members.pop(pid, None) is not None:
                c.forgotten += 1
                self._forget_old_authors(c, -float("inf"))

    def _release(self, c: Cluster) -> None:
        for key in c.lsh_keys:
            self._lsh.remove(key)
        self._unindex_ann(c)
        for pid in (*c.members, *c.kept_roots, *c.reserved):
            if self._post_cluster.get(pid) == c.id:
                del self._post_cluster[pid]


def input_from_post(post: Mapping[str, Any], *, ts: float, author_key: str | None = None,
                    official: bool = False, stance: str | None = None,
                    claim_prob: float | None = None) -> ClusterInput:
    """A :class:`ClusterInput` from a canonical/enriched post dict."""
    author = post.get("author") if isinstance(post.get("author"), Mapping) else None
    kind = str(post.get("kind") or "")
    parent = None
    for key, k in (("repost_of", "repost"), ("quote_of", "quote"), ("reply_to", "reply")):
        value = post.get(key)
        if isinstance(value, str) and value:
            parent = value
            kind = kind if kind in ENGAGEMENT_KINDS else k
            break
    if parent is None:
        kind = "post"
    followers = author.get("followers") if author else None
    return ClusterInput(
        id=str(post["id"]), text=str(post.get("text") or ""), ts=ts, kind=kind, parent=parent,
        author=author_key, followers=followers if isinstance(followers, int) else 0,
        verified=bool(author.get("verified")) if author else False, official=official,
        stance=stance, claim_prob=claim_prob)


def partition(assignments: Iterable[Assignment]) -> dict[str, list[str]]:
    """cluster id -> post ids (first assignment of each post), for tests and summaries."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for a in assignments:
        if a.post_id in seen:
            continue
        seen.add(a.post_id)
        out.setdefault(a.cluster_id, []).append(a.post_id)
    return out
