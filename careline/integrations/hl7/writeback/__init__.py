"""Write-back: what patients did in Careline, sent to the EHR as HL7 v2 over MLLP.

`queue` fills the outbox from the appointment history and the consent ledger, `build`
writes the HL7 messages, `send` delivers them over MLLP with retries.

What goes back, per feed that has an outbound host and port:

- SIU for appointment changes made by patients (a text reply, a signed link, online booking)
  or by the front desk in Careline's own pages and REST API (source `front_desk`); never
  what other staff edits, the feed itself, FHIR or an import did, so nothing is echoed): S14
  with SCH-6 event reason `confirmed` for a confirmation, S15 for a cancellation, S14 with
  SCH-25 Booked and SCH-6 `reinstated` or `unconfirmed` when the front desk undoes a
  cancellation or a confirmation minutes later, S13 with the new start in SCH-11, TQ1 (2.5+)
  and AIS/AIL/AIP for a reschedule, S12 for a visit the patient booked in Careline. SCH-25
  is an HL7 table 0278 code (`Booked^Booked^HL70278`, `Cancelled^Cancelled^HL70278`; 0278
  has no "confirmed", so a confirmed visit is Booked), SCH-16 (filler contact person) is
  `CARELINE^Careline^Patient^^^^^^CARELINE`. The feed's own appointments carry the
  placer/filler ids (SCH-1/SCH-2) of the last message the feed sent for them, and its own
  PID segment; visits born in Careline carry `<id>^CARELINE` as placer id and are sent to
  the feeds of the organization whose location map is empty or names the visit's practice.
- ADT^A31 (update person information) for texting opt-outs and opt-ins, for every
  patient of the feed with that mobile number and an MRN. The PID is the one the feed
  last sent for the patient (so an EHR that replaces the whole person record loses
  nothing), with the mobile repetition of PID-13 marked in XTN-9 (`SMS OPTED-OUT` /
  `SMS OPTED-IN`), and a Z-segment for machines:

      ZCL|1|SMS|<number, E.164>|OPTED-OUT or OPTED-IN|<changed at>|<source>

  (ZCL-6 is Careline's consent source: patient_text, provider_report, staff,
  online_form, import). Consent changes the feed itself reported are not sent back.

Every message is a row in the outbox (Hl7OutboundMessage) before it is sent. The outbox
is filled set-based from the appointment history and the consent ledger, read from a
cursor per feed; a new feed's cursor starts one day back so configuring write-back does
not replay years of history. Sending claims due rows (SKIP LOCKED on PostgreSQL), one
connection per feed and pass, and keeps each stream (an appointment, a patient's consent)
strictly in order: a row waits while an earlier row of its stream is pending.

ACKs: AA (or CA) → sent. AR → failed at once with the EHR's reason. AE, an unreadable
ACK or one answering another control id → retried with exponential backoff, failed after
MAX_ERROR_ACKS such answers. A refused or dropped connection or a timeout is retried with
backoff (capped at an hour) without giving up: the EHR never judged the message, and
giving up would lose a patient's cancellation while the interface engine is down. A
retried message keeps its control id (MSH-10), so a receiver that saw it before can tell.
"""
