"""One modality generated from another; built in: expression from histology (tile features ->
expression profile of the slide). Any registered source (bags mean-pooled) and table target work
(``make_generator(name, source=..., target=...)``).

Two generators share one interface (``fit(features, expression)``, ``predict(features)``):

* :class:`RidgeGenerator`: multi-output ridge regression from mean-pooled tile features to
  standardised genes (penalty by efficient leave-one-out CV) -- the regression baseline;
* :class:`CVAEGenerator`: a conditional VAE over a PCA-compressed expression space, conditioned on
  pooled tile features (a small stand-in for PathGen's diffusion over transcriptomes); its point
  prediction is the mean of decoded samples, and :meth:`CVAEGenerator.sample` draws profiles.

Both are evaluated by per-gene Pearson correlation on held-out patients
(:func:`generation_cv`), and fill in missing expression for fusion (:func:`fill_expression`),
which marks those patients' expression as generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from torch import nn

from metastat import progress as prog
from metastat.atomic import atomic_write, save_arrays
from metastat.errors import InputError, ModelError, UnknownNameError, did_you_mean
from metastat.evaluate.splits import patient_kfold
from metastat.fusion.modalities import MultimodalSet, single_thread


class _Generator:
    """Shared standardisation and fitting from a :class:`MultimodalSet`."""

    def _standardise(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.x_mean_, self.x_sd_ = x.mean(0), x.std(0) + 1e-8
        self.y_mean_, self.y_sd_ = y.mean(0), y.std(0) + 1e-8
        return (x - self.x_mean_) / self.x_sd_, (y - self.y_mean_) / self.y_sd_

    def fit(self, features: np.ndarray, expression: np.ndarray) -> _Generator:
        raise NotImplementedError

    def predict(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    #: the modality generated from (any; bags are mean-pooled) and the table modality generated
    source: str = "histology"
    target: str = "expression"

    def fit_set(self, data: MultimodalSet) -> _Generator:
        """Fit on the patients with both the source and the (measured) target modality."""
        src, tgt = self.source, self.target
        both = data.has(src) & data.measured(tgt)
        if both.sum() < 10:
            raise InputError(
                f"generating {tgt} needs >= 10 training patients with both {src} and "
                f"{tgt}; found {int(both.sum())}."
            )
        x = data.features(src).to_numpy()[both]
        table = data.features(tgt)[both]
        ok = table.notna().all().to_numpy()
        self.genes_ = [g for g, k in zip(table.columns, ok, strict=True) if k]
        return self.fit(x, table[self.genes_].to_numpy())

    def generate(self, data: MultimodalSet) -> pd.DataFrame:
        """Generated target values (columns of the training data) of every patient with the
        source modality."""
        has = data.has(self.source)
        x = data.features(self.source).to_numpy()[has]
        return pd.DataFrame(self.predict(x), index=data.patient_ids[has], columns=self.genes_)


class RidgeGenerator(_Generator):
    """Ridge regression, pooled tile features -> standardised genes."""

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-2, 4, 13)), seed: int = 0):
        self.alphas = alphas
        self.seed = seed

    def fit(self, features: np.ndarray, expression: np.ndarray) -> RidgeGenerator:
        x, y = self._standardise(features, expression)
        self.model_ = RidgeCV(alphas=self.alphas).fit(x, y)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        y = self.model_.predict((features - self.x_mean_) / self.x_sd_)
        return y * self.y_sd_ + self.y_mean_


class _CVAE(nn.Module):
    def __init__(self, y_dim: int, c_dim: int, latent: int, hidden: int) -> None:
        super().__init__()
        self.cond = nn.Sequential(nn.Linear(c_dim, hidden), nn.ReLU())
        self.enc = nn.Sequential(
            nn.Linear(y_dim + hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent)
        )
        self.dec = nn.Sequential(
            nn.Linear(latent + hidden, hidden), nn.ReLU(), nn.Linear(hidden, y_dim)
        )
        self.latent = latent

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cond(c)
        mu, logvar = self.enc(torch.cat([y, h], 1)).chunk(2, 1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        return self.dec(torch.cat([z, h], 1)), kl

    def decode(self, c: torch.Tensor, n_samples: int, gen: torch.Generator) -> torch.Tensor:
        h = self.cond(c)
        z = torch.randn(n_samples, c.shape[0], self.latent, generator=gen)
        return self.dec(torch.cat([z, h.expand(n_samples, -1, -1)], 2))


class CVAEGenerator(_Generator):
    """Conditional VAE over PCA-compressed standardised expression, conditioned on tile features."""

    def __init__(
        self,
        n_components: int = 32,
        latent: int = 8,
        hidden: int = 128,
        beta: float = 0.5,
        epochs: int = 400,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
        n_samples: int = 32,
        seed: int = 0,
    ) -> None:
        self.n_components, self.latent, self.hidden, self.beta = n_components, latent, hidden, beta
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.n_samples, self.seed = n_samples, seed

    def fit(self, features: np.ndarray, expression: np.ndarray) -> CVAEGenerator:
        with single_thread():
            return self._fit(features, expression)

    def _fit(self, features: np.ndarray, expression: np.ndarray) -> CVAEGenerator:
        torch.manual_seed(self.seed)
        x, y = self._standardise(features, expression)
        k = max(1, min(self.n_components, y.shape[0] - 1, y.shape[1]))
        self.pca_ = PCA(k, random_state=self.seed).fit(y)
        yp = self.pca_.transform(y)
        self.yp_sd_ = yp.std(0) + 1e-8
        yt = torch.as_tensor(yp / self.yp_sd_, dtype=torch.float32)
        ct = torch.as_tensor(x, dtype=torch.float32)
        self.net_ = _CVAE(k, x.shape[1], self.latent, self.hidden)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net_.train()
        for _ in range(self.epochs):
            opt.zero_grad()
            recon, kl = self.net_(yt, ct)
            loss = ((recon - yt) ** 2).sum(1).mean() + self.beta * kl
            loss.backward()
            opt.step()
        self.net_.eval()
        return self

    def sample(self, features: np.ndarray, n_samples: int = 1) -> np.ndarray:
        """Generated profiles, shape (n_samples, n_patients, n_genes)."""
        c = torch.as_tensor((features - self.x_mean_) / self.x_sd_, dtype=torch.float32)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            yp = self.net_.decode(c, n_samples, gen).numpy() * self.yp_sd_
        y = yp @ self.pca_.components_ + self.pca_.mean_
        return y * self.y_sd_ + self.y_mean_

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.sample(features, self.n_samples).mean(0)


GENERATORS = {"ridge": RidgeGenerator, "cvae": CVAEGenerator}


def make_generator(
    name: str, seed: int = 0, *, source: str = "histology", target: str = "expression"
) -> _Generator:
    """Generator ``name`` of table modality ``target`` from modality ``source``."""
    if name not in GENERATORS:
        raise UnknownNameError(
            f"unknown generator {name!r}; generators: {sorted(GENERATORS)}."
            f"{did_you_mean(name, sorted(GENERATORS))}"
        )
    gen = GENERATORS[name](seed=seed)
    gen.source, gen.target = source, target
    return gen


def fill_missing(data: MultimodalSet, generator: _Generator) -> MultimodalSet:
    """Fill in the generator's target modality for patients who have its source modality but not
    the target (marked generated)."""
    tgt = generator.target
    if tgt not in data.tables:
        raise InputError(f"the data set has no {tgt} columns to fill in.")
    rows = ~data.has(tgt) & data.has(generator.source)
    if not rows.any():
        return data
    gen = generator.generate(data.subset(np.flatnonzero(rows)))
    return data.with_values(tgt, gen, rows)


fill_expression = fill_missing  # the built-in generators fill expression from histology


def per_gene_correlation(true: pd.DataFrame, pred: pd.DataFrame) -> pd.Series:
    """Pearson correlation per gene between measured and generated expression (same patients)."""
    pred = pred.reindex(index=true.index, columns=true.columns)
    a = true.to_numpy(float) - true.to_numpy(float).mean(0)
    b = pred.to_numpy(float) - pred.to_numpy(float).mean(0)
    denom = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    r = np.divide((a * b).sum(0), denom, out=np.full(a.shape[1], np.nan), where=denom > 0)
    return pd.Series(r, index=true.columns, name="pearson_r")


def generation_cv(
    data: MultimodalSet,
    generators: tuple[str, ...] = ("ridge", "cvae"),
    *,
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Held-out per-gene correlation of each generator (patient-grouped CV; predictions of all
    test folds pooled, then correlated per gene). Columns: one per generator; rows: genes."""
    out = {}
    for name in generators:
        g = make_generator(name, seed)
        d = data.subset(np.flatnonzero(data.has(g.source) & data.has(g.target)))
        splits = patient_kfold(d.patient_ids, d.labels, n_splits=n_splits, seed=seed)
        preds = []
        for s in prog.progress(splits, f"generate ({name})", unit="fold", enabled=progress):
            gen = make_generator(name, seed).fit_set(d.subset(s.train))
            preds.append(gen.generate(d.subset(s.test)))
        pred = pd.concat(preds)
        out[name] = per_gene_correlation(d.features(g.target).loc[pred.index, pred.columns], pred)
    return pd.DataFrame(out)


def save_ridge(gen: RidgeGenerator, path: str | Path) -> Path:
    """Save a fitted ridge generator (JSON genes + safetensors arrays, no pickle)."""
    if not isinstance(gen, RidgeGenerator):
        raise InputError("only the ridge generator can be saved with a fusion model.")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "coef": gen.model_.coef_,
        "intercept": np.atleast_1d(gen.model_.intercept_),
        "x_mean": gen.x_mean_,
        "x_sd": gen.x_sd_,
        "y_mean": gen.y_mean_,
        "y_sd": gen.y_sd_,
    }
    save_arrays(out / "generator.safetensors", arrays)
    meta = {
        "format": "metastat.fusion.ridge_generator/1",
        "genes": gen.genes_,
        "alpha": float(gen.model_.alpha_),
        "source": gen.source,
        "target": gen.target,
    }
    atomic_write(out / "generator.json", json.dumps(meta))
    return out


class _Linear:
    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_, self.intercept_ = coef, intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_.T + self.intercept_


def load_ridge(path: str | Path) -> RidgeGenerator:
    """Load a ridge generator saved by :func:`save_ridge`."""
    path = Path(path)
    try:
        meta = json.loads((path / "generator.json").read_text())
        a = load_file(str(path / "generator.safetensors"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the expression generator ({exc}).") from exc
    gen = RidgeGenerator()
    gen.genes_ = list(meta["genes"])
    gen.source, gen.target = meta.get("source", "histology"), meta.get("target", "expression")
    gen.model_ = _Linear(a["coef"], a["intercept"])  # type: ignore[assignment]
    gen.x_mean_, gen.x_sd_, gen.y_mean_, gen.y_sd_ = a["x_mean"], a["x_sd"], a["y_mean"], a["y_sd"]
    return gen
