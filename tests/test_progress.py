from ulmfit.progress import LOG_INTERVAL_S, progress_bar


def test_redirected_output_gets_a_bar_once_a_minute(capsys):
    # under pytest stderr is captured, i.e. not a terminal: like a background run with a log file
    bar = progress_bar(total=3, desc="work", mininterval=0.5)
    assert not bar.disable and bar.mininterval == LOG_INTERVAL_S
    bar.update(3)
    bar.close()
    assert "work" in capsys.readouterr().err
    assert progress_bar(False, total=3).disable
