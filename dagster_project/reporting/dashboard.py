def write_dashboard(root):
    raise NotImplementedError
