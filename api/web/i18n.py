"""The dashboard's words, in Bahasa Indonesia (the default) and English.

The language comes from ``?lang=id|en`` (which the page then keeps in a cookie),
else from that cookie, else Indonesian. ``Translator(lang)("key", n=3)`` looks a
phrase up and fills its ``{placeholders}``; ``.label(group, value)`` names a
domain value (an item kind, a status, a role…) and falls back to the value itself,
so a value added to the ledger later still shows, untranslated.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

LANGUAGES = ("id", "en")
DEFAULT = "id"
COOKIE = "saksi_lang"

# key → (Bahasa Indonesia, English)
TEXT: dict[str, tuple[str, str]] = {
    # layout
    "skip": ("Langsung ke isi", "Skip to content"),
    "tagline": ("buku besar Pilkada yang dapat diverifikasi", "a verifiable Pilkada ledger"),
    "nav": ("Navigasi utama", "Main navigation"),
    "nav.home": ("Beranda", "Home"),
    "nav.readiness": ("Kesiapan", "Readiness"),
    "nav.custody": ("Rantai Kustodi", "Custody"),
    "nav.commitments": ("Komitmen", "Commitments"),
    "nav.pledges": ("Netralitas", "Neutrality"),
    "nav.search": ("Cari", "Search"),
    "language": ("Bahasa", "Language"),
    "footer": (
        "Setiap angka di sini berasal dari pernyataan bertanda tangan Ed25519 dalam log Merkle "
        "RFC 6962, dan dapat diverifikasi secara luring.",
        "Every figure here comes from Ed25519-signed statements in an RFC 6962 Merkle log and "
        "can be verified offline.",
    ),
    "footer.api": ("API dan dokumentasinya", "The API and its documentation"),
    "breadcrumb": ("Lokasi halaman", "Breadcrumb"),
    # common
    "code": ("Kode", "Code"),
    "region": ("Wilayah", "Region"),
    "status": ("Status", "Status"),
    "index": ("Indeks", "Index"),
    "leaf_hash": ("Hash daun", "Leaf hash"),
    "digest": ("Digest pernyataan", "Statement digest"),
    "signer": ("Penanda tangan", "Signer"),
    "key": ("Kunci", "Key"),
    "key_id": ("ID kunci", "Key id"),
    "signed_at": ("ditandatangani", "signed"),
    "recorded_at": ("dicatat", "recorded"),
    "signed_time": ("Waktu tanda tangan (issued_at)", "Signed time (issued_at)"),
    "recorded_time": ("Waktu pencatatan (recorded_at)", "Recorded time (recorded_at)"),
    "gap": ("dicatat {gap} setelah ditandatangani", "recorded {gap} after signing"),
    "statement": ("pernyataan", "statement"),
    "receipt": ("tanda terima", "receipt"),
    "download_receipt": ("Unduh tanda terima (.tlog-proof)", "Download receipt (.tlog-proof)"),
    "items": ("Barang", "Items"),
    "item": ("Barang", "Item"),
    "seals": ("Segel", "Seals"),
    "none": ("tidak ada", "none"),
    "yes": ("ya", "yes"),
    "no": ("tidak", "no"),
    "filter": ("Saring", "Filter"),
    "reset": ("Hapus saringan", "Clear filters"),
    "all": ("Semua", "All"),
    "shown": ("{n} ditampilkan", "{n} shown"),
    "next_page": ("Halaman berikutnya →", "Next page →"),
    "tps_count": ("{n} TPS", "{n} TPS"),
    "copy_hint": ("Salin dan jalankan di terminal Anda.", "Copy and run these in your terminal."),
    "text_search": ("Kata kunci", "Keywords"),
    "region_hint": ("18.72 / Metro", "18.72 / Metro"),
    # home
    "home.title": ("Integritas log", "Log integrity"),
    "home.lead": (
        "Saksi mencatat setiap komitmen, ikrar netralitas, dan serah terima logistik Pilkada "
        "sebagai pernyataan bertanda tangan dalam log yang hanya bisa ditambah. Siapa pun dapat "
        "memeriksa bahwa log ini tidak diubah.",
        "Saksi records every commitment, neutrality pledge and handover of Pilkada logistics as "
        "a signed statement in an append-only log. Anyone can check that this log has not been "
        "altered.",
    ),
    "checkpoint": ("Checkpoint terbaru", "Latest checkpoint"),
    "checkpoint.origin": ("Asal (nama log)", "Origin (log name)"),
    "checkpoint.size": ("Ukuran (jumlah entri)", "Size (entries)"),
    "checkpoint.root": ("Akar Merkle", "Merkle root"),
    "checkpoint.log_key": ("Kunci publik log", "Log public key"),
    "checkpoint.pending": (
        "{n} entri baru sudah dicatat dan menunggu checkpoint berikutnya.",
        "{n} newer entries are recorded and await the next checkpoint.",
    ),
    "witnesses": ("Saksi independen (witness)", "Independent witnesses"),
    "witnesses.lead": (
        "Witness memeriksa bahwa setiap checkpoint konsisten dengan yang sebelumnya, lalu "
        "menandatanganinya bersama (cosign). Log tidak dapat menunjukkan riwayat berbeda kepada "
        "orang berbeda tanpa ketahuan.",
        "Witnesses check that each checkpoint is consistent with the previous one, then cosign "
        "it. The log cannot show different histories to different people without being caught.",
    ),
    "witness.key": ("Kunci cosignature", "Cosignature key"),
    "witness.last": ("Terakhir cosign", "Last cosigned"),
    "witness.size": ("pada ukuran {n}", "at size {n}"),
    "witness.latest": ("menandatangani checkpoint terbaru", "cosigned the latest checkpoint"),
    "witness.behind": ("belum menandatangani checkpoint terbaru", "has not cosigned the latest checkpoint"),
    "witness.none": ("Belum ada witness yang menandatangani.", "No witness has cosigned yet."),
    "verify": ("Verifikasi sendiri", "Verify it yourself"),
    "verify.lead": (
        "Anda tidak perlu mempercayai server ini. Dengan perintah berikut (dan perintah saksi dari "
        "proyek ini) Anda memeriksa tanda tangan, inklusi, dan konsistensi sendiri:",
        "You need not trust this server. With these commands (and the saksi command from this project) "
        "you check signatures, inclusion and consistency yourself:",
    ),
    "verify.key": (
        "Kunci publik log — bandingkan dengan yang diumumkan",
        "The log's public key — compare it with the one published",
    ),
    "verify.checkpoint": (
        "Checkpoint terbaru beserta cosignature witness",
        "The latest checkpoint with the witnesses' cosignatures",
    ),
    "verify.receipt": (
        "Tanda terima satu entri, diverifikasi secara luring",
        "One entry's receipt, verified offline",
    ),
    "verify.bundle": (
        "Bundel audit satu TPS, diverifikasi secara luring",
        "An audit bundle for one TPS, verified offline",
    ),
    "verify.rebuild": (
        "Bangun ulang proyeksi dari log dan bandingkan digest-nya:",
        "Rebuild the read models from the log and compare their digests:",
    ),
    "activity": ("Pernyataan yang dicatat per hari", "Statements recorded per day"),
    "activity.max": ("puncak {n} per hari", "peak {n} a day"),
    "overview": ("Ringkasan", "Overview"),
    "count.consignments": ("kiriman logistik", "consignments"),
    "count.commitments": ("komitmen", "commitments"),
    "count.pledges": ("ikrar netralitas", "neutrality pledges"),
    "count.actors": ("aktor terdaftar", "registered actors"),
    # readiness
    "readiness.title": ("Kesiapan logistik", "Logistics readiness"),
    "readiness.lead": (
        "TPS harus memegang seluruh logistik pada H-1. Tepat waktu berarti penerima "
        "menandatangani penerimaan (issued_at) sebelum tenggat; waktu pencatatan ditampilkan di sampingnya.",
        "Every TPS must hold all its logistics by H-1. On time means the receiver signed the "
        "receipt (issued_at) by the deadline; the recorded time is shown beside it.",
    ),
    "readiness.children": ("Rincian per wilayah", "By region"),
    "readiness.children_tps": ("Rincian per TPS", "By TPS"),
    "readiness.none": (
        "Belum ada TPS yang tercatat di wilayah ini.",
        "No TPS is recorded in this region yet.",
    ),
    "readiness.problems": ("TPS yang perlu perhatian", "TPS needing attention"),
    "readiness.missing_items": ("Barang yang belum diterima", "Items not received"),
    "readiness.ready_pct": ("{pct} lengkap sebelum H-1", "{pct} complete by H-1"),
    "seg.by_deadline": ("Lengkap sebelum H-1", "Complete by H-1"),
    "seg.late": ("Terlambat", "Late"),
    "seg.with_discrepancy": ("Diterima dengan selisih", "Received with discrepancy"),
    "seg.not_received": ("Belum diterima", "Not received"),
    "seg.not_dispatched": ("Belum dikirim", "Not dispatched"),
    "seg.in_discrepancy": ("Ada selisih", "Discrepancy"),
    "received_at": ("Diterima", "Received"),
    "missing": ("Kurang", "Missing"),
    "consignment": ("Kiriman", "Consignment"),
    # custody
    "custody.title": ("Rantai kustodi", "Chain of custody"),
    "custody.lead": (
        "Setiap serah terima logistik, keluar dan kembali: siapa menyerahkan apa kepada siapa, "
        "kapan, dengan jumlah, segel, dan saksi — masing-masing tertaut ke pernyataan "
        "bertanda tangan dan tanda terimanya.",
        "Every handover of logistics, out and back: who handed what to whom, when, with counts, "
        "seals and witnesses — each linked to its signed statement and its receipt.",
    ),
    "custody.lookup": ("ID kiriman atau kode TPS", "Consignment id or TPS code"),
    "custody.attention": (
        "Kiriman dengan selisih atau belum diterima",
        "Consignments with a discrepancy or not received",
    ),
    "custody.all": ("Semua kiriman", "All consignments"),
    "custody.none": ("Tidak ada.", "None."),
    "custody.chain": ("Dalam rantai", "In the chain"),
    "custody.parent": ("Meneruskan kiriman", "Continues consignment"),
    "custody.children": ("Diteruskan sebagai", "Continued as"),
    "custody.tps": ("Halaman TPS", "TPS page"),
    "custody.timeline": ("Linimasa serah terima", "Handover timeline"),
    "custody.hops": ("{n} serah terima", "{n} handovers"),
    "custody.due": ("Tenggat", "Due by"),
    "custody.on_time": ("tepat waktu", "on time"),
    "custody.late": ("terlambat", "late"),
    "custody.sent": ("Dikirim", "Sent"),
    "custody.received": ("Diterima", "Received"),
    "custody.difference": ("Selisih", "Difference"),
    "custody.seals_intact": ("Segel utuh", "Seals intact"),
    "custody.seals_broken": ("Segel rusak", "Seals broken"),
    "custody.condition": ("Kondisi", "Condition"),
    "custody.officers": ("Petugas TPS", "Polling station officers"),
    "custody.no_hops": (
        "Belum ada serah terima yang tercatat untuk TPS ini.",
        "No handover is recorded for this TPS yet.",
    ),
    "event.dispatched": ("{sender} menyerahkan kepada {receiver}", "{sender} handed over to {receiver}"),
    "event.witnessed": ("Disaksikan oleh {actor}", "Witnessed by {actor}"),
    "event.received": ("{receiver} menerima", "{receiver} received"),
    "event.discrepancy": ("Selisih dilaporkan oleh {actor}", "Discrepancy reported by {actor}"),
    "event.awaiting": ("Menunggu penerimaan oleh {receiver}", "Awaiting receipt by {receiver}"),
    # registers
    "commitments.title": ("Register komitmen", "Commitments register"),
    "commitments.lead": (
        "Komitmen partai dan pasangan calon — kampanye damai, pakta integritas, menolak politik "
        "uang — dengan dukungan dan laporan pelanggarannya di sampingnya.",
        "Commitments by parties and candidate pairs — peaceful campaigning, integrity pacts, "
        "refusing money politics — with their endorsements and breach reports beside them.",
    ),
    "commitments.party": ("Partai / paslon", "Party / candidate pair"),
    "commitments.kind": ("Jenis", "Kind"),
    "commitments.race": ("Pemilihan", "Race"),
    "commitments.declared_by": ("Dinyatakan oleh", "Declared by"),
    "commitments.endorsements": ("Dukungan", "Endorsements"),
    "commitments.breaches": ("Laporan pelanggaran", "Breach reports"),
    "commitments.no_breach": ("Tidak ada laporan pelanggaran.", "No breach reported."),
    "commitments.none": ("Tidak ada komitmen yang cocok.", "No matching commitment."),
    "document": ("Dokumen (SHA-256)", "Document (SHA-256)"),
    "evidence": ("Bukti (SHA-256)", "Evidence (SHA-256)"),
    "occurred": ("Kejadian", "Occurred"),
    "place": ("Tempat", "Place"),
    "pledges.title": ("Register netralitas", "Neutrality register"),
    "pledges.lead": (
        "Ikrar netralitas ASN, TNI, Polri, dan penyelenggara, dengan temuan, laporan, dan "
        "putusan (DKPP, BKN) di sampingnya.",
        "Neutrality pledges by civil servants, TNI, Polri and the organisers, with findings, "
        "reports and rulings (DKPP, BKN) beside them.",
    ),
    "pledges.institution": ("Lembaga", "Institution"),
    "pledges.valid_until": ("Berlaku sampai", "Valid until"),
    "pledges.reports": ("Temuan dan laporan", "Findings and reports"),
    "pledges.no_report": ("Tidak ada temuan atau laporan.", "No finding or report."),
    "pledges.ruling": ("Putusan", "Ruling"),
    "pledges.no_ruling": ("Belum diputus.", "Not ruled yet."),
    "pledges.sanction": ("Sanksi", "Sanction"),
    "pledges.none": ("Tidak ada ikrar yang cocok.", "No matching pledge."),
    "reported_by": ("oleh {actor}", "by {actor}"),
    # statement
    "statement.title": ("Pernyataan #{index}", "Statement #{index}"),
    "statement.decoded": ("Isi pernyataan", "The statement"),
    "statement.type": ("Jenis", "Type"),
    "statement.id": ("ID pernyataan", "Statement id"),
    "statement.subject": ("Subjek", "Subject"),
    "statement.refs": ("Merujuk ke", "Refers to"),
    "statement.body": ("Isi (body)", "Body"),
    "statement.signature": ("Tanda tangan dan kunci", "Signature and key"),
    "statement.mandates": ("Mandat saat itu", "Mandates at the time"),
    "statement.log": ("Di dalam log", "In the log"),
    "statement.receipt": ("Tanda terima (c2sp.org/tlog-proof)", "Receipt (c2sp.org/tlog-proof)"),
    "statement.receipt_lead": (
        "Tanda terima ini memuat entri itu sendiri, bukti inklusinya, dan checkpoint yang "
        "ditandatangani; verifikasi hanya memerlukan kunci publik log.",
        "This receipt carries the entry itself, its inclusion proof and the signed checkpoint; "
        "verifying it needs nothing but the log's public key.",
    ),
    "statement.prev": ("← Sebelumnya", "← Previous"),
    "statement.next": ("Berikutnya →", "Next →"),
    "statement.raw": ("Entri mentah (JSON)", "Raw entry (JSON)"),
    "unknown_key": ("kunci tidak dikenal", "unknown key"),
    # actor
    "actor.title": ("Aktor", "Actor"),
    "actor.registered": ("Didaftarkan pada entri", "Registered at entry"),
    "actor.by": ("oleh", "by"),
    "actor.keys": ("Kunci", "Keys"),
    "actor.mandates": ("Mandat", "Mandates"),
    "actor.valid": ("Berlaku", "Valid"),
    "actor.in_force": ("berlaku", "in force"),
    "actor.revoked": ("dicabut pada #{index}", "revoked at #{index}"),
    "actor.consignments": ("Kiriman yang dikirim atau diterima", "Consignments sent or received"),
    "actor.trail": ("Jejak registri", "Registry trail"),
    # search
    "search.title": ("Cari", "Search"),
    "search.label": (
        "ID kiriman, kode TPS, aktor, atau nama wilayah",
        "Consignment id, TPS code, actor or region name",
    ),
    "search.button": ("Cari", "Search"),
    "search.placeholder": (
        "mis. Metro, 18.72.01.1001.001, out.18.72.01",
        "e.g. Metro, 18.72.01.1001.001, out.18.72.01",
    ),
    "search.results": ("Hasil untuk “{q}”", "Results for “{q}”"),
    "search.none": ("Tidak ditemukan apa pun untuk “{q}”.", "Nothing found for “{q}”."),
    "search.consignments": ("Kiriman", "Consignments"),
    "search.tps": ("TPS", "Polling stations (TPS)"),
    "search.regions": ("Wilayah", "Regions"),
    "search.actors": ("Aktor", "Actors"),
    "search.statement": ("Pernyataan", "Statement"),
    "search.no_data": ("belum ada data", "no data yet"),
    "search.too_short": ("Ketik minimal 2 karakter.", "Type at least 2 characters."),
    # errors
    "notfound.title": ("Tidak ditemukan", "Not found"),
    "notfound.lead": ("Kami tidak menemukan:", "We could not find:"),
    "notfound.hint": (
        "Coba cari dengan kata lain, atau kembali ke beranda.",
        "Try another search, or go back home.",
    ),
}

# Domain vocabularies: group → value → (Bahasa Indonesia, English).
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "item": {
        "ballot_box_governor": ("Kotak suara gubernur", "Ballot box, governor"),
        "ballot_box_regent": ("Kotak suara bupati", "Ballot box, regent"),
        "ballot_box_mayor": ("Kotak suara wali kota", "Ballot box, mayor"),
        "booth": ("Bilik suara", "Voting booth"),
        "ballots_governor": ("Surat suara gubernur", "Ballots, governor"),
        "ballots_regent": ("Surat suara bupati", "Ballots, regent"),
        "ballots_mayor": ("Surat suara wali kota", "Ballots, mayor"),
        "result_forms_governor": ("Formulir C.Hasil gubernur", "Result forms (C.Hasil), governor"),
        "result_forms_regent": ("Formulir C.Hasil bupati", "Result forms (C.Hasil), regent"),
        "result_forms_mayor": ("Formulir C.Hasil wali kota", "Result forms (C.Hasil), mayor"),
        "seals": ("Segel", "Seals"),
        "ink": ("Tinta", "Ink"),
        "marking_tools": ("Alat coblos", "Marking tools"),
        "voter_list_copies": ("Salinan DPT", "Voter-list copies"),
    },
    "status": {
        "dispatched": ("Dalam perjalanan", "In transit"),
        "received": ("Diterima lengkap", "Received complete"),
        "received_with_discrepancy": ("Diterima dengan selisih", "Received with discrepancy"),
        "missing": ("Belum dikirim", "Not dispatched"),
    },
    "direction": {
        "outbound": ("Keluar (menuju TPS)", "Outbound (towards the TPS)"),
        "return": ("Kembali (menuju KPU)", "Return (towards KPU)"),
    },
    "condition": {
        "good": ("baik", "good"),
        "damaged": ("rusak", "damaged"),
        "wet": ("basah", "wet"),
        "incomplete": ("tidak lengkap", "incomplete"),
    },
    "discrepancy": {
        "shortage": ("kekurangan", "shortage"),
        "damage": ("kerusakan", "damage"),
        "surplus": ("kelebihan", "surplus"),
        "broken_seal": ("segel rusak", "broken seal"),
        "late": ("terlambat", "late"),
    },
    "type": {
        "actor.registered": ("Aktor didaftarkan", "Actor registered"),
        "actor.key_added": ("Kunci ditambahkan", "Key added"),
        "actor.key_revoked": ("Kunci dicabut", "Key revoked"),
        "actor.mandate_granted": ("Mandat diberikan", "Mandate granted"),
        "actor.mandate_revoked": ("Mandat dicabut", "Mandate revoked"),
        "commitment.declared": ("Komitmen dinyatakan", "Commitment declared"),
        "commitment.endorsed": ("Komitmen didukung", "Commitment endorsed"),
        "commitment.breach_reported": ("Pelanggaran komitmen dilaporkan", "Commitment breach reported"),
        "pledge.made": ("Ikrar netralitas", "Neutrality pledge"),
        "pledge.violation_reported": ("Pelanggaran netralitas dilaporkan", "Neutrality violation reported"),
        "pledge.violation_ruled": ("Putusan pelanggaran netralitas", "Neutrality violation ruled"),
        "logistics.dispatched": ("Logistik dikirim", "Logistics dispatched"),
        "logistics.received": ("Logistik diterima", "Logistics received"),
        "logistics.witnessed": ("Serah terima disaksikan", "Handover witnessed"),
        "logistics.discrepancy_reported": ("Selisih logistik dilaporkan", "Logistics discrepancy reported"),
    },
    "role": {
        "registrar": ("Registrar", "Registrar"),
        "kpu": ("KPU", "KPU (election commission)"),
        "ppk": ("PPK (kecamatan)", "PPK (kecamatan committee)"),
        "pps": ("PPS (desa/kelurahan)", "PPS (village committee)"),
        "kpps": ("KPPS (TPS)", "KPPS (polling station)"),
        "bawaslu": ("Bawaslu", "Bawaslu (election supervisor)"),
        "panwascam": ("Panwascam", "Panwascam (kecamatan supervisor)"),
        "pkd": ("PKD (pengawas desa)", "PKD (village supervisor)"),
        "ptps": ("PTPS (pengawas TPS)", "PTPS (TPS supervisor)"),
        "dkpp": ("DKPP", "DKPP (ethics council)"),
        "bkn": ("BKN", "BKN (civil service agency)"),
        "party": ("Partai politik", "Political party"),
        "candidate_pair": ("Pasangan calon", "Candidate pair"),
        "candidate_witness": ("Saksi paslon", "Candidate's witness"),
        "tni": ("TNI", "TNI (armed forces)"),
        "polri": ("Polri", "Polri (police)"),
        "asn": ("ASN", "ASN (civil servants)"),
        "observer": ("Pemantau", "Observer"),
        "auditor": ("Auditor", "Auditor"),
        "witness": ("Witness log", "Log witness"),
    },
    "kind": {
        "peaceful_campaign": ("Kampanye damai", "Peaceful campaign"),
        "integrity_pact": ("Pakta integritas", "Integrity pact"),
        "anti_money_politics": ("Tolak politik uang", "Against money politics"),
        "anti_hoax": ("Tolak hoaks", "Against hoaxes"),
        "accept_result": ("Menerima hasil", "Accept the result"),
        "follow_procedures": ("Taat prosedur", "Follow procedures"),
    },
    "race": {
        "governor": ("Gubernur", "Governor"),
        "regent": ("Bupati", "Regent"),
        "mayor": ("Wali kota", "Mayor"),
    },
    "undertaking": {
        "neutral_before_during_after": (
            "Netral sebelum, selama, dan sesudah",
            "Neutral before, during and after",
        ),
        "no_taking_sides": ("Tidak memihak", "No taking sides"),
        "no_intimidation": ("Tidak mengintimidasi", "No intimidation"),
        "no_hoax": ("Tidak menyebarkan hoaks", "No hoaxes"),
        "refuse_money_politics": ("Menolak politik uang", "Refuse money politics"),
        "refuse_gifts": ("Menolak pemberian", "Refuse gifts"),
    },
    "report": {
        "finding": ("Temuan", "Finding"),
        "report": ("Laporan", "Report"),
    },
    "ruling": {
        "upheld": ("Terbukti", "Upheld"),
        "dismissed": ("Tidak terbukti", "Dismissed"),
    },
    "level": {
        "0": ("negara", "country"),
        "1": ("provinsi", "province"),
        "2": ("kabupaten/kota", "regency/city"),
        "3": ("kecamatan", "kecamatan (district)"),
        "4": ("desa/kelurahan", "village"),
        "5": ("TPS", "polling station"),
    },
    "actor_kind": {
        "organisation": ("Lembaga", "Organisation"),
        "person": ("Perorangan", "Person"),
    },
    "month": {
        str(n): names
        for n, names in enumerate(
            [("Jan", "Jan"), ("Feb", "Feb"), ("Mar", "Mar"), ("Apr", "Apr"), ("Mei", "May"), ("Jun", "Jun"),
             ("Jul", "Jul"), ("Agu", "Aug"), ("Sep", "Sep"), ("Okt", "Oct"), ("Nov", "Nov"), ("Des", "Dec")],
            start=1,
        )
    },
}


@dataclass(frozen=True)
class Translator:
    """Phrases and labels in one language (``id`` or ``en``)."""

    lang: str

    @property
    def _column(self) -> int:
        return LANGUAGES.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        """The phrase ``key`` with its placeholders filled; the key itself when unknown."""
        phrase = TEXT[key][self._column] if key in TEXT else key
        return phrase.format(**values) if values else phrase

    def label(self, group: str, value: str) -> str:
        """A domain value's name (an item kind, a status, a role…), else the value."""
        found = LABELS.get(group, {}).get(value)
        return found[self._column] if found else value

    @property
    def decimal_mark(self) -> str:
        return "," if self.lang == "id" else "."

    def number(self, value: int) -> str:
        """A whole number with thousands separators: 4.507 (id), 4,507 (en)."""
        text = f"{value:,}"
        return text.replace(",", ".") if self.lang == "id" else text

    def percent(self, part: int, whole: int) -> str:
        """``part/whole`` as a percentage with one decimal; ``–`` when ``whole`` is 0."""
        if not whole:
            return "–"
        return f"{100 * part / whole:.1f}".replace(".", self.decimal_mark) + " %"


def language(request: Request) -> str:
    """The page's language: ``?lang=``, else the cookie, else Indonesian."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT
