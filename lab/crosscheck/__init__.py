"""Peer cross-checks of the book's numbers against other libraries, run by hand and never in CI (issue 14).

* `lab.crosscheck.recbole` - RecBole 1.2.1's SASRec (CE loss) and Pop on the book's own split, beside chapter 02's
  2-layer SASRec-CE model and popularity; `python -m lab.crosscheck.recbole --profile smoke`. RecBole runs in its own
  virtual environment (`.venv-recbole/`, pins in `recbole-requirements.txt`) through `recbole_runner.py`, which
  never imports `lab`.

The submodules are not imported here: `python -m lab.crosscheck.recbole` runs one as a script.
"""
