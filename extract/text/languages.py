"""Language codes: ISO 639-3 (``deu``) or full NLLB/FLORES-200 codes (``deu_Latn``).

`resolve_langs("deu,eng,fra")` -> ``["deu_Latn", "eng_Latn", "fra_Latn"]``. A three-letter
code maps to its FLORES-200 code when exactly one script exists for it, or to the
preferred script below (``zho`` -> ``zho_Hans``); an unknown code raises `SltPipeError`
listing close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from cache.errors import SltPipeError

# The 202 FLORES-200 codes SONAR and NLLB-200 know (same list as sonar's asset cards).
FLORES200: tuple[str, ...] = (
    "ace_Arab", "ace_Latn", "acm_Arab", "acq_Arab", "aeb_Arab", "afr_Latn", "ajp_Arab",
    "aka_Latn", "als_Latn", "amh_Ethi", "apc_Arab", "arb_Arab", "ars_Arab", "ary_Arab",
    "arz_Arab", "asm_Beng", "ast_Latn", "awa_Deva", "ayr_Latn", "azb_Arab", "azj_Latn",
    "bak_Cyrl", "bam_Latn", "ban_Latn", "bel_Cyrl", "bem_Latn", "ben_Beng", "bho_Deva",
    "bjn_Arab", "bjn_Latn", "bod_Tibt", "bos_Latn", "bug_Latn", "bul_Cyrl", "cat_Latn",
    "ceb_Latn", "ces_Latn", "cjk_Latn", "ckb_Arab", "crh_Latn", "cym_Latn", "dan_Latn",
    "deu_Latn", "dik_Latn", "dyu_Latn", "dzo_Tibt", "ell_Grek", "eng_Latn", "epo_Latn",
    "est_Latn", "eus_Latn", "ewe_Latn", "fao_Latn", "fij_Latn", "fin_Latn", "fon_Latn",
    "fra_Latn", "fur_Latn", "fuv_Latn", "gaz_Latn", "gla_Latn", "gle_Latn", "glg_Latn",
    "grn_Latn", "guj_Gujr", "hat_Latn", "hau_Latn", "heb_Hebr", "hin_Deva", "hne_Deva",
    "hrv_Latn", "hun_Latn", "hye_Armn", "ibo_Latn", "ilo_Latn", "ind_Latn", "isl_Latn",
    "ita_Latn", "jav_Latn", "jpn_Jpan", "kab_Latn", "kac_Latn", "kam_Latn", "kan_Knda",
    "kas_Arab", "kas_Deva", "kat_Geor", "kaz_Cyrl", "kbp_Latn", "kea_Latn", "khk_Cyrl",
    "khm_Khmr", "kik_Latn", "kin_Latn", "kir_Cyrl", "kmb_Latn", "kmr_Latn", "knc_Arab",
    "knc_Latn", "kon_Latn", "kor_Hang", "lao_Laoo", "lij_Latn", "lim_Latn", "lin_Latn",
    "lit_Latn", "lmo_Latn", "ltg_Latn", "ltz_Latn", "lua_Latn", "lug_Latn", "luo_Latn",
    "lus_Latn", "lvs_Latn", "mag_Deva", "mai_Deva", "mal_Mlym", "mar_Deva", "min_Latn",
    "mkd_Cyrl", "mlt_Latn", "mni_Beng", "mos_Latn", "mri_Latn", "mya_Mymr", "nld_Latn",
    "nno_Latn", "nob_Latn", "npi_Deva", "nso_Latn", "nus_Latn", "nya_Latn", "oci_Latn",
    "ory_Orya", "pag_Latn", "pan_Guru", "pap_Latn", "pbt_Arab", "pes_Arab", "plt_Latn",
    "pol_Latn", "por_Latn", "prs_Arab", "quy_Latn", "ron_Latn", "run_Latn", "rus_Cyrl",
    "sag_Latn", "san_Deva", "sat_Beng", "scn_Latn", "shn_Mymr", "sin_Sinh", "slk_Latn",
    "slv_Latn", "smo_Latn", "sna_Latn", "snd_Arab", "som_Latn", "sot_Latn", "spa_Latn",
    "srd_Latn", "srp_Cyrl", "ssw_Latn", "sun_Latn", "swe_Latn", "swh_Latn", "szl_Latn",
    "tam_Taml", "taq_Latn", "taq_Tfng", "tat_Cyrl", "tel_Telu", "tgk_Cyrl", "tgl_Latn",
    "tha_Thai", "tir_Ethi", "tpi_Latn", "tsn_Latn", "tso_Latn", "tuk_Latn", "tum_Latn",
    "tur_Latn", "twi_Latn", "tzm_Tfng", "uig_Arab", "ukr_Cyrl", "umb_Latn", "urd_Arab",
    "uzn_Latn", "vec_Latn", "vie_Latn", "war_Latn", "wol_Latn", "xho_Latn", "ydd_Hebr",
    "yor_Latn", "yue_Hant", "zho_Hans", "zho_Hant", "zsm_Latn", "zul_Latn",
)

# ISO 639-3 codes with several scripts in FLORES-200: the script a bare code means.
PREFERRED_SCRIPT: dict[str, str] = {
    "zho": "zho_Hans",
    "ace": "ace_Latn",
    "bjn": "bjn_Latn",
    "kas": "kas_Arab",
    "knc": "knc_Latn",
    "taq": "taq_Latn",
}

# Common aliases that are not the FLORES-200 ISO code itself.
ALIASES: dict[str, str] = {
    "ger": "deu_Latn",
    "fre": "fra_Latn",
    "chi": "zho_Hans",
    "cmn": "zho_Hans",
    "arb": "arb_Arab",
    "ara": "arb_Arab",
    "fas": "pes_Arab",
    "per": "pes_Arab",
    "msa": "zsm_Latn",
    "lav": "lvs_Latn",
    "mon": "khk_Cyrl",
    "swa": "swh_Latn",
    "est": "est_Latn",
}

_BY_LOWER = {c.lower(): c for c in FLORES200}
_ISO: dict[str, list[str]] = {}
for _c in FLORES200:
    _ISO.setdefault(_c[:3], []).append(_c)


def resolve_lang(code: str) -> str:
    """One code (``deu``, ``deu_Latn``, ``DEU_latn``) -> its FLORES-200 code."""
    raw = code.strip()
    low = raw.lower().replace("-", "_")
    if low in _BY_LOWER:
        return _BY_LOWER[low]
    if low in PREFERRED_SCRIPT:
        return PREFERRED_SCRIPT[low]
    if low in _ISO and len(_ISO[low]) == 1:
        return _ISO[low][0]
    if low in ALIASES:
        return ALIASES[low]
    candidates = list(FLORES200) + sorted(_ISO)
    close = difflib.get_close_matches(raw, candidates, n=5, cutoff=0.5)
    close += [c for c in difflib.get_close_matches(low, candidates, n=5, cutoff=0.5) if c not in close]
    if low[:3] in _ISO:
        close = _ISO[low[:3]] + [c for c in close if c not in _ISO[low[:3]]]
    hint = f"did you mean {', '.join(close[:5])}?" if close else "no close match"
    raise SltPipeError(
        f"unknown language code {code!r} ({hint})",
        fix="use an ISO 639-3 code (deu, eng, fra, spa, zho) or a FLORES-200 code (deu_Latn, zho_Hans)",
    )


def resolve_langs(spec: str | Iterable[str]) -> list[str]:
    """``"deu,eng,fra"`` or ``["deu", "eng_Latn"]`` -> FLORES-200 codes, order kept, duplicates dropped."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if not str(item).strip():
            continue
        code = resolve_lang(str(item))
        if code not in out:
            out.append(code)
    if not out:
        raise SltPipeError("no language given", fix="name at least one language, e.g. deu,eng,fra")
    return out
